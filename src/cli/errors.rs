//! Turns client failures into kubectl's one-line messages.

/// `Error from server (NotFound): pods "x" not found` for a Kubernetes `Status`; for anything
/// else (cannot connect, bad kubeconfig, …) the error and its causes on one line.
pub fn from_kube(err: kube::Error) -> anyhow::Error {
    match err {
        kube::Error::Api(status) => anyhow::anyhow!(server_message(&status)),
        kube::Error::Service(e) => {
            anyhow::anyhow!("cannot reach the API server: {}", one_line(e.as_ref()))
        }
        kube::Error::HyperError(e) => {
            anyhow::anyhow!("cannot reach the API server: {}", one_line(&e))
        }
        other => anyhow::anyhow!(one_line(&other)),
    }
}

fn server_message(status: &kube::core::Status) -> String {
    let message = if status.message.is_empty() {
        format!("the server answered {}", status.code)
    } else {
        status.message.clone()
    };
    // kube-rs fills `reason` of a non-Status error body with its own words; only a real
    // Kubernetes reason is a single CamelCase word.
    let reason = &status.reason;
    if reason == "Invalid" {
        // kubectl prints validation failures bare: `The Pod "x" is invalid: spec…: Required value`.
        message
    } else if !reason.is_empty() && reason.chars().all(|c| c.is_ascii_alphanumeric()) {
        format!("Error from server ({reason}): {message}")
    } else {
        format!("Error from server: {message}")
    }
}

/// Joins an error and its sources with `: `, skipping a source whose text its parent already shows.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(reason: &str, message: &str, code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, reason)
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn server_errors_read_like_kubectl() {
        let e = from_kube(status("NotFound", "pods \"x\" not found", 404));
        assert_eq!(
            format!("{e:#}"),
            "Error from server (NotFound): pods \"x\" not found"
        );
        let e = from_kube(status("AlreadyExists", "pods \"x\" already exists", 409));
        assert_eq!(
            format!("{e:#}"),
            "Error from server (AlreadyExists): pods \"x\" already exists"
        );
        let e = from_kube(status("Failed to parse error data", "bad gateway", 502));
        assert_eq!(format!("{e:#}"), "Error from server: bad gateway");
        let e = from_kube(status(
            "Invalid",
            "Pod \"x\" is invalid: spec: Required value",
            422,
        ));
        assert_eq!(
            format!("{e:#}"),
            "Pod \"x\" is invalid: spec: Required value"
        );
    }

    #[test]
    fn connection_failures_name_the_api_server() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = from_kube(kube::Error::Service(Box::new(io)));
        assert_eq!(format!("{e:#}"), "cannot reach the API server: refused");
    }

    #[test]
    fn other_errors_fit_on_one_line() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused\nagain");
        let e = from_kube(kube::Error::ReadEvents(io));
        assert_eq!(
            format!("{e:#}"),
            "Error reading events stream: refused again"
        );
    }
}
