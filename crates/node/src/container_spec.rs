//! How a container's spec becomes a run: pull policy, environment, argv, listen address and
//! restart decisions. Pure functions over the pod spec.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use herd_oci_fetch::PullPolicy;
use k8s_openapi::api::core::v1::Container;

/// What a container runner needs to know of its pod.
#[derive(Clone, Debug)]
pub(crate) struct PodFacts {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub pod_ip: Option<IpAddr>,
}

/// The pod's `spec.restartPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// Parses `spec.restartPolicy`; absent or unknown means `Always`, the API default.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether a container that ended with `exit_code` runs again.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// `imagePullPolicy`, defaulted as the API server's admission defaults it
/// ([`herd_api::admission::default_pull_policy`]) when a pod reaches the node without one.
pub(crate) fn pull_policy(container: &Container) -> PullPolicy {
    let parse = |policy: &str| match policy {
        "Always" => Some(PullPolicy::Always),
        "IfNotPresent" => Some(PullPolicy::IfNotPresent),
        "Never" => Some(PullPolicy::Never),
        _ => None,
    };
    let image = container.image.as_deref().unwrap_or_default();
    container
        .image_pull_policy
        .as_deref()
        .and_then(parse)
        .or_else(|| parse(herd_api::admission::default_pull_policy(image)))
        .unwrap_or(PullPolicy::Always)
}

/// The guest's argv: `command` (or the container name when there is none) followed by `args`,
/// with `$(VAR)` references to the environment expanded.
pub(crate) fn argv(container: &Container, env: &[(String, String)]) -> Vec<String> {
    let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let command = match &container.command {
        Some(command) if !command.is_empty() => command.clone(),
        _ => vec![container.name.clone()],
    };
    command
        .iter()
        .chain(container.args.iter().flatten())
        .map(|arg| crate::pod_env::expand(arg, |name| vars.get(name).copied()))
        .collect()
}

/// Where an HTTP proxy workload listens: the pod IP and the container's first port.
pub(crate) fn http_listen(
    container: &Container,
    pod_ip: Option<IpAddr>,
) -> Result<SocketAddr, String> {
    let ip = pod_ip.ok_or_else(|| "the pod has no IP".to_owned())?;
    let port = container.ports.iter().flatten().next().ok_or_else(|| {
        format!(
            "container {:?} serves HTTP but declares no containerPort",
            container.name
        )
    })?;
    let port = u16::try_from(port.container_port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("containerPort {} is not a valid port", port.container_port))?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).expect("valid Container")
    }

    fn facts() -> PodFacts {
        PodFacts {
            name: "web-1".into(),
            namespace: "shop".into(),
            uid: "u-1".into(),
            pod_ip: Some("127.1.0.2".parse().expect("ip")),
        }
    }

    #[test]
    fn pull_policy_defaults_by_tag() {
        let cases = [
            ("reg:5000/app", PullPolicy::Always),
            ("reg:5000/app:latest", PullPolicy::Always),
            ("reg:5000/app:v1", PullPolicy::IfNotPresent),
            ("reg:5000/app@sha256:abcd", PullPolicy::IfNotPresent),
            ("app", PullPolicy::Always),
        ];
        for (image, expected) in cases {
            let c = container(json!({"name": "c", "image": image}));
            assert_eq!(pull_policy(&c), expected, "{image}");
        }
        let c = container(json!({"name": "c", "image": "app:v1", "imagePullPolicy": "Always"}));
        assert_eq!(pull_policy(&c), PullPolicy::Always);
        let c = container(json!({"name": "c", "image": "app", "imagePullPolicy": "Never"}));
        assert_eq!(pull_policy(&c), PullPolicy::Never);
    }

    #[test]
    fn argv_is_command_or_name_then_args() {
        let env = vec![("WHO".to_owned(), "world".to_owned())];
        let c = container(json!({"name": "hello", "args": ["--greet", "$(WHO)"]}));
        assert_eq!(argv(&c, &env), ["hello", "--greet", "world"]);
        let c = container(json!({"name": "hello", "command": ["main.wasm", "-v"], "args": ["x"]}));
        assert_eq!(argv(&c, &env), ["main.wasm", "-v", "x"]);
        let c = container(json!({"name": "hello"}));
        assert_eq!(argv(&c, &env), ["hello"]);
    }

    #[test]
    fn http_listen_uses_pod_ip_and_first_port() {
        let c = container(
            json!({"name": "web", "ports": [{"containerPort": 8080}, {"containerPort": 9090}]}),
        );
        assert_eq!(
            http_listen(&c, facts().pod_ip),
            Ok("127.1.0.2:8080".parse().expect("addr"))
        );
        let no_port = container(json!({"name": "web"}));
        assert!(http_listen(&no_port, facts().pod_ip).is_err());
        assert!(http_listen(&c, None).is_err());
    }

    #[test]
    fn restart_policies() {
        assert!(RestartPolicy::parse(None).restarts(0));
        assert!(RestartPolicy::parse(Some("OnFailure")).restarts(1));
        assert!(!RestartPolicy::parse(Some("OnFailure")).restarts(0));
        assert!(!RestartPolicy::parse(Some("Never")).restarts(1));
    }
}
