//! `http-hello` — a WASI preview 2 component exporting `wasi:http/incoming-handler` (the `wasi:http/proxy`
//! world). The host owns the listener and calls `handle` once per request, in a fresh instance.
//!
//! Every request gets `200`, `content-type: text/plain` and the body
//! `Hello from herd! pod=<POD_NAME or "?"> path=<request path>\n`. The environment is read through
//! `wasi:cli/environment`, which wasi-http hosts provide alongside the proxy world.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasi::http::proxy::export!(HttpHello);

struct HttpHello;

impl wasi::exports::http::incoming_handler::Guest for HttpHello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let pod = wasi::cli::environment::get_environment()
            .into_iter()
            .find_map(|(name, value)| (name == "POD_NAME").then_some(value));
        let body = greeting(pod.as_deref(), request.path_with_query().as_deref());
        // Nothing useful can be done if the host refuses the response; the host then answers 500 itself.
        let _ = respond(response_out, body.as_bytes());
    }
}

/// The response body for a pod name (if known) and a request path-with-query (if any).
fn greeting(pod: Option<&str>, path_with_query: Option<&str>) -> String {
    let pod = pod.unwrap_or("?");
    let path = path_with_query
        .map(|p| p.split_once('?').map_or(p, |(path, _query)| path))
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    format!("Hello from herd! pod={pod} path={path}\n")
}

fn respond(response_out: ResponseOutparam, body: &[u8]) -> Result<(), ()> {
    let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
        .map_err(|_| ())?;
    let response = OutgoingResponse::new(headers);
    response.set_status_code(200)?;
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
    use super::greeting;

    #[test]
    fn greeting_names_pod_and_path_without_query() {
        assert_eq!(
            greeting(Some("web-1"), Some("/a/b?x=1")),
            "Hello from herd! pod=web-1 path=/a/b\n"
        );
    }

    #[test]
    fn greeting_defaults_when_pod_or_path_missing() {
        assert_eq!(greeting(None, None), "Hello from herd! pod=? path=/\n");
        assert_eq!(
            greeting(None, Some("?q")),
            "Hello from herd! pod=? path=/\n"
        );
    }
}
