//! `http-hello` — a WASI preview 2 component exporting `wasi:http/incoming-handler` (the `wasi:http/proxy`
//! world). The host owns the listener and calls `handle` once per request, in a fresh instance.
//!
//! Each request is logged to stdout as `GET <path> <status>`. Routes (everything else greets):
//! - `/status/<code>` answers that status code (for probe demos: a liveness probe on `/status/500` fails);
//! - `/ready` answers 200 when the file named by `READY_FILE` (default `/config/ready`) says `true`, else 503
//!   (a readiness probe driven by a mounted ConfigMap);
//! - `/file/<path>` answers the contents of `/<path>` read through `wasi:filesystem`, or 404 with the error
//!   (what the guest can and cannot see of its mounts);
//! - `/env` answers the environment, one `NAME=value` per line, sorted;
//! - `/fetch/<host:port>/<path>` makes an outbound `wasi:http` request to `http://<host:port>/<path>` and
//!   answers `upstream <status>: <body>`, or 502 with the error;
//! - `/api/<path>` calls the Kubernetes API as the pod's ServiceAccount, as a client library in a pod does:
//!   `GET https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/<path>` with `Authorization: Bearer <token>`
//!   (the token read from `/var/run/secrets/kubernetes.io/serviceaccount/token`, the pod's projected
//!   ServiceAccount token), and answers the API server's status and body as they are, or 502 with the error
//!   (e.g. `/api/api/v1/namespaces/default/pods` lists the pods the ServiceAccount may list);
//! - anything else gets `200`, `content-type: text/plain` and the body
//!   `Hello from herd! pod=<POD_NAME or "?"> path=<request path>\n`.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};
use wasi::io::streams::StreamError;

wasi::http::proxy::export!(HttpHello);

struct HttpHello;

impl wasi::exports::http::incoming_handler::Guest for HttpHello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path_with_query = request.path_with_query();
        let path = path_only(path_with_query.as_deref());
        let (status, body) = route(path);
        // An access log line on stdout, which the node agent keeps as the container's log.
        println!("GET {path} {status}");
        // Nothing useful can be done if the host refuses the response; the host then answers 500 itself.
        let _ = respond(response_out, status, body.as_bytes());
    }
}

/// The request path without its query; `/` when empty.
fn path_only(path_with_query: Option<&str>) -> &str {
    path_with_query
        .map(|p| p.split_once('?').map_or(p, |(path, _query)| path))
        .filter(|p| !p.is_empty())
        .unwrap_or("/")
}

fn route(path: &str) -> (u16, String) {
    if let Some(code) = path.strip_prefix("/status/") {
        return match code.parse::<u16>() {
            Ok(code) if (100..=599).contains(&code) => (code, format!("status {code}\n")),
            _ => (400, format!("not a status code: {code}\n")),
        };
    }
    if path == "/ready" {
        let file = std::env::var("READY_FILE").unwrap_or_else(|_| "/config/ready".into());
        return match std::fs::read_to_string(&file) {
            Ok(text) if text.trim() == "true" => (200, "ready\n".into()),
            Ok(text) => (503, format!("not ready: {file} says {:?}\n", text.trim())),
            Err(e) => (503, format!("not ready: {file}: {e}\n")),
        };
    }
    if let Some(file) = path.strip_prefix("/file") {
        return match std::fs::read_to_string(file) {
            Ok(text) => (200, text),
            Err(e) => (404, format!("{file}: {e}\n")),
        };
    }
    if path == "/env" {
        let mut vars: Vec<String> = std::env::vars()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        vars.sort();
        return (200, vars.concat());
    }
    if let Some(api_path) = path.strip_prefix("/api/") {
        return match call_api(&format!("/{api_path}")) {
            Ok(answer) => answer,
            Err(e) => (
                502,
                format!("the API server at https://{}: {e}\n", api_authority()),
            ),
        };
    }
    if let Some(target) = path.strip_prefix("/fetch/") {
        let (authority, rest) = target.split_once('/').unwrap_or((target, ""));
        return match fetch(Scheme::Http, authority, &format!("/{rest}"), &[]) {
            Ok((status, body)) => (200, format!("upstream {status}: {body}")),
            Err(e) => (502, format!("fetch http://{authority}/{rest}: {e}\n")),
        };
    }
    let pod = std::env::var("POD_NAME").ok();
    (200, greeting(pod.as_deref(), path))
}

/// The greeting for a pod name (if known) and a request path.
fn greeting(pod: Option<&str>, path: &str) -> String {
    let pod = pod.unwrap_or("?");
    format!("Hello from herd! pod={pod} path={path}\n")
}

/// Where a pod's ServiceAccount token is (the kubelet's projected volume).
const TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The API server's `host:port` from the `kubernetes` Service's variables (an IPv6 host in brackets).
fn api_authority() -> String {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// GET `path` from the API server with the pod's ServiceAccount token: its status and body.
fn call_api(path: &str) -> Result<(u16, String), String> {
    let token = std::fs::read_to_string(TOKEN_FILE).map_err(|e| format!("{TOKEN_FILE}: {e}"))?;
    let authorization = format!("Bearer {}", token.trim());
    fetch(
        Scheme::Https,
        &api_authority(),
        path,
        &[
            ("authorization", authorization.as_str()),
            ("accept", "application/json"),
        ],
    )
}

/// GET `{scheme}://{authority}{path}` with `headers` through `wasi:http/outgoing-handler`; the status and
/// the body as text.
fn fetch(
    scheme: Scheme,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| format!("header {name}: {e:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| format!("bad authority {authority:?}"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| format!("bad path {path:?}"))?;
    let pending =
        wasi::http::outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(e))) => return Err(format!("{e:?}")),
        Some(Err(())) | None => return Err("no response".into()),
    };
    let status = response.status();
    let body = response.consume().map_err(|()| "no body")?;
    let stream = body.stream().map_err(|()| "no body stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

fn respond(response_out: ResponseOutparam, status: u16, body: &[u8]) -> Result<(), ()> {
    let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
        .map_err(|_| ())?;
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status)?;
    let outgoing_body = response.body()?;
    ResponseOutparam::set(response_out, Ok(response));

    let stream = outgoing_body.write()?;
    // blocking_write_and_flush takes at most 4096 bytes per call.
    for chunk in body.chunks(4096) {
        stream.blocking_write_and_flush(chunk).map_err(|_| ())?;
    }
    drop(stream);
    OutgoingBody::finish(outgoing_body, None).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::{greeting, path_only, route};

    #[test]
    fn greeting_names_pod_and_path_without_query() {
        assert_eq!(
            greeting(Some("web-1"), path_only(Some("/a/b?x=1"))),
            "Hello from herd! pod=web-1 path=/a/b\n"
        );
    }

    #[test]
    fn greeting_defaults_when_pod_or_path_missing() {
        assert_eq!(
            greeting(None, path_only(None)),
            "Hello from herd! pod=? path=/\n"
        );
        assert_eq!(
            greeting(None, path_only(Some("?q"))),
            "Hello from herd! pod=? path=/\n"
        );
    }

    #[test]
    fn status_route_answers_the_code_asked_for() {
        assert_eq!(route("/status/503").0, 503);
        assert_eq!(route("/status/204").0, 204);
        assert_eq!(route("/status/abc").0, 400);
        assert_eq!(route("/status/999").0, 400);
    }

    #[test]
    fn file_route_reads_files_and_reports_errors() {
        let dir = std::env::temp_dir().join(format!("http-hello-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f.txt");
        std::fs::write(&file, "contents\n").unwrap();
        assert_eq!(
            route(&format!("/file{}", file.display())),
            (200, "contents\n".into())
        );
        let (code, body) = route(&format!("/file{}/missing", dir.display()));
        assert_eq!(code, 404, "{body}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
