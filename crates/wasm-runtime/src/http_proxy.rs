//! Serving a `wasi:http/incoming-handler` component over HTTP/1.1: one fresh
//! store and instance per request, like `wasmtime serve`. Instances come
//! from the HTTP engine's pool ([`HttpPool`](crate::HttpPool)): a request
//! that finds it full is answered `503 Service Unavailable` by the host.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wasmtime::PoolConcurrencyLimitError;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::error::{RuntimeError, describe};
use crate::limits::limited_store;
use crate::state::{ComponentState, GuestEnv};
use crate::workload::Exit;

/// How long to back off when `accept` fails (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A bound listener plus everything needed to handle a request.
pub(crate) struct Server {
    listener: TcpListener,
    handler: Arc<Handler>,
}

/// Per-workload request state shared by all connections.
struct Handler {
    pre: ProxyPre<ComponentState>,
    env: GuestEnv,
    /// `Host` for requests that name none (HTTP/1.0): the listen address.
    default_host: HeaderValue,
    /// Set when a request's instance exceeded the memory limit: the whole
    /// workload is then killed, like a container hitting its limit.
    out_of_memory: Mutex<Option<String>>,
    /// Cancelled together with setting `out_of_memory`.
    killed: CancellationToken,
}

impl Server {
    /// Binds the listener; nothing is served until [`Server::serve`].
    pub(crate) async fn bind(
        pre: ProxyPre<ComponentState>,
        env: GuestEnv,
        addr: Option<SocketAddr>,
    ) -> Result<Self, RuntimeError> {
        let Some(addr) = addr else {
            return Err(RuntimeError::Bind {
                addr: None,
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an HTTP proxy workload needs a listen address",
                ),
            });
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| RuntimeError::Bind {
                addr: Some(addr),
                source,
            })?;
        // A pooled instance's memory cannot outgrow its slot: make the
        // limiter refuse first, so that growth ends as `OutOfMemory`.
        let slot = pre
            .engine()
            .get_pooling_config()
            .map(|pool| u64::try_from(pool.get_max_memory_size()).unwrap_or(u64::MAX));
        let env = match slot {
            Some(slot) => env.with_memory_cap(slot),
            None => env,
        };
        let local = listener.local_addr().unwrap_or(addr);
        let default_host = HeaderValue::from_str(&local.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Ok(Self {
            listener,
            handler: Arc::new(Handler {
                pre,
                env,
                default_host,
                out_of_memory: Mutex::new(None),
                killed: CancellationToken::new(),
            }),
        })
    }

    /// Accepts and serves connections until `stop` is cancelled (then
    /// aborts every connection and every guest still running), or `drain`
    /// is (then stops accepting, lets every connection finish its current
    /// request and closes it), or a request exceeds the memory limit.
    pub(crate) async fn serve(
        self,
        stop: CancellationToken,
        drain: Option<CancellationToken>,
    ) -> Exit {
        let drain = drain.unwrap_or_default();
        let mut connections = JoinSet::new();
        let killed = self.handler.killed.clone();
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                () = killed.cancelled() => break,
                () = drain.cancelled() => {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = killed.cancelled() => {}
                        () = async { while connections.join_next().await.is_some() {} } => {}
                    }
                    break;
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(serve_connection(
                            self.handler.clone(),
                            stream,
                            peer,
                            stop.clone(),
                            drain.clone(),
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting an HTTP connection failed");
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        }
                    }
                },
            }
        }
        connections.shutdown().await;
        let out_of_memory = match self.handler.out_of_memory.lock() {
            Ok(mut message) => message.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        match out_of_memory {
            Some(message) => Exit::OutOfMemory(message),
            None => Exit::Stopped,
        }
    }
}

async fn serve_connection(
    handler: Arc<Handler>,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
    drain: CancellationToken,
) {
    let service = service_fn(move |req| {
        let handler = handler.clone();
        let stop = stop.clone();
        async move { Ok::<_, Infallible>(handler.handle(req, stop).await) }
    });
    let connection = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = drain.cancelled() => {
            // Finish the request in flight (if any), then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

impl Handler {
    /// Runs the guest for one request. Failures become a 500 (or 400) rather
    /// than a dropped connection.
    async fn handle(
        &self,
        mut req: Request<Incoming>,
        stop: CancellationToken,
    ) -> Response<HyperOutgoingBody> {
        if req.uri().authority().is_none() && !req.headers().contains_key(HOST) {
            req.headers_mut().insert(HOST, self.default_host.clone());
        }
        match self.call_guest(req, stop).await {
            Ok(response) => response,
            Err(Failure::BadRequest(message)) => text_response(StatusCode::BAD_REQUEST, message),
            Err(Failure::PoolExhausted(message)) => {
                tracing::debug!(error = %message, "no instance slot free for an HTTP request");
                text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service unavailable: too many requests in flight\n".into(),
                )
            }
            Err(Failure::Guest(message)) => {
                tracing::warn!(error = %message, "HTTP guest failed to respond");
                text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal server error\n".into(),
                )
            }
        }
    }

    async fn call_guest(
        &self,
        req: Request<Incoming>,
        stop: CancellationToken,
    ) -> Result<Response<HyperOutgoingBody>, Failure> {
        let state = ComponentState::new(&self.env).map_err(|e| Failure::Guest(e.to_string()))?;
        let mut store = limited_store(self.pre.engine(), state, self.env.cpu.as_ref());
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .map_err(|e| Failure::BadRequest(format!("{}\n", describe(&e))))?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(|e| Failure::Guest(describe(&e)))?;

        // The guest runs in its own task so it can keep streaming the body
        // after it has handed over the response head.
        let pre = self.pre.clone();
        let guest = tokio::spawn(async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            let result = tokio::select! {
                biased;
                () = stop.cancelled() => Ok(()),
                result = run => result,
            };
            let out_of_memory = store.data().limiter.refused().map(str::to_owned);
            (result, out_of_memory)
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(Failure::Guest(format!(
                "guest answered with error {code:?}"
            ))),
            // The guest dropped the response outparam without setting it.
            Err(_) => Err(Failure::Guest(match guest.await {
                Ok((_, Some(message))) => {
                    self.kill_out_of_memory(message.clone());
                    message
                }
                Ok((Ok(()), None)) => "guest returned without setting a response".to_owned(),
                Ok((Err(e), None)) if e.is::<PoolConcurrencyLimitError>() => {
                    return Err(Failure::PoolExhausted(describe(&e)));
                }
                Ok((Err(e), None)) => describe(&e),
                Err(e) => format!("guest task failed: {e}"),
            })),
        }
    }

    fn kill_out_of_memory(&self, message: String) {
        match self.out_of_memory.lock() {
            Ok(mut slot) => *slot = Some(message),
            Err(poisoned) => *poisoned.into_inner() = Some(message),
        }
        self.killed.cancel();
    }
}

/// Why a request got no response from the guest.
enum Failure {
    BadRequest(String),
    /// The instance pool had no free slot for the request.
    PoolExhausted(String),
    Guest(String),
}

fn text_response(status: StatusCode, message: String) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(message))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
