//! herd-proxy: herd's kube-proxy.
//!
//! Watches Services and Endpoints through the API, turns them into a [`RoutingTable`]
//! (`clusterIP:port` → ready `podIP:port`s) and hands each table to a [`Forwarder`], which
//! listens on every cluster address (with `SO_REUSEPORT`, so the proxies of several nodes on
//! one host can share it) and forwards each TCP connection to the next backend, round robin.
//!
//! ```text
//! Services ─┐ reflector stores ┌─▶ RoutingTable ─▶ Forwarder ─▶ listener per clusterIP:port
//! Endpoints ┘                  │                                  └─▶ copy_bidirectional to podIP:port
//! ```

mod forwarder;
mod routes;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

pub use forwarder::Forwarder;
pub use routes::RoutingTable;

/// Why the proxy stopped before it was told to.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The Service or Endpoints watch stream ended, which the watcher never does on its own.
    #[error("the {0} watch ended unexpectedly")]
    WatchEnded(&'static str),
}

/// Which watch an event came from.
#[derive(Clone, Copy, Debug)]
enum Source {
    Services,
    Endpoints,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Services => "Service",
            Source::Endpoints => "Endpoints",
        }
    }
}

/// Runs the proxy until `shutdown` is cancelled. Watch errors are logged and retried with
/// back-off; they never end the proxy.
///
/// # Errors
///
/// [`ProxyError::WatchEnded`] if a watch stream ends by itself.
pub async fn run(client: Client, shutdown: CancellationToken) -> Result<(), ProxyError> {
    let (services, services_writer) = reflector::store::<Service>();
    let (endpoints, endpoints_writer) = reflector::store::<Endpoints>();
    let service_events = reflector(
        services_writer,
        watcher(Api::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map_ok(|_| ())
    .map(|event| (Source::Services, event));
    let endpoint_events = reflector(
        endpoints_writer,
        watcher(Api::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .map_ok(|_| ())
    .map(|event| (Source::Endpoints, event));
    let mut events = std::pin::pin!(futures::stream::select(service_events, endpoint_events));

    let mut forwarder = Forwarder::new(shutdown.child_token());
    let result = loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            event = events.next() => event,
        };
        match event {
            None => break Err(ProxyError::WatchEnded("Service or Endpoints")),
            Some((source, Err(error))) => {
                tracing::warn!(watch = source.name(), %error, "watch failed, retrying");
            }
            Some((_, Ok(()))) => {
                let services = services.state();
                let endpoints = endpoints.state();
                let table = RoutingTable::from_objects(
                    services.iter().map(|s| &**s),
                    endpoints.iter().map(|e| &**e),
                );
                forwarder.update(table);
            }
        }
    };
    forwarder.shutdown().await;
    result
}
