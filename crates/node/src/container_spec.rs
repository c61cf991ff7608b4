//! How a container's spec becomes a run: pull policy, environment, argv, listen address and
//! restart decisions. Pure functions over the pod spec.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use herd_oci_fetch::PullPolicy;
use k8s_openapi::api::core::v1::Container;

/// The facts about a pod that `fieldRef` environment variables can refer to.
#[derive(Clone, Debug)]
pub(crate) struct PodFacts {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub node_name: String,
    pub pod_ip: Option<IpAddr>,
    pub host_ip: IpAddr,
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

/// `imagePullPolicy`, defaulted like the API server: `Always` for `:latest` or untagged
/// images, `IfNotPresent` otherwise.
pub(crate) fn pull_policy(container: &Container) -> PullPolicy {
    match container.image_pull_policy.as_deref() {
        Some("Always") => PullPolicy::Always,
        Some("IfNotPresent") => PullPolicy::IfNotPresent,
        Some("Never") => PullPolicy::Never,
        _ => default_pull_policy(container.image.as_deref().unwrap_or_default()),
    }
}

fn default_pull_policy(image: &str) -> PullPolicy {
    if image.contains('@') {
        return PullPolicy::IfNotPresent;
    }
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    match last_segment.split_once(':') {
        Some((_, tag)) if tag != "latest" => PullPolicy::IfNotPresent,
        _ => PullPolicy::Always,
    }
}

/// The container's environment: `env[].value` (with `$(VAR)` references to earlier entries
/// expanded) and `fieldRef`s to the pod's name, namespace, UID, node name, pod IP and host
/// IP. Other `valueFrom` sources are not supported yet and are left out.
pub(crate) fn environment(container: &Container, pod: &PodFacts) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => Some(expand(value, &lookup(&env))),
            (None, Some(source)) => source
                .field_ref
                .as_ref()
                .and_then(|f| field_value(&f.field_path, pod)),
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            env.retain(|(name, _)| *name != var.name);
            env.push((var.name.clone(), value));
        }
    }
    env
}

fn lookup(env: &[(String, String)]) -> HashMap<&str, &str> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn field_value(path: &str, pod: &PodFacts) -> Option<String> {
    match path {
        "metadata.name" => Some(pod.name.clone()),
        "metadata.namespace" => Some(pod.namespace.clone()),
        "metadata.uid" => Some(pod.uid.clone()),
        "spec.nodeName" => Some(pod.node_name.clone()),
        "status.podIP" => Some(pod.pod_ip.map(|ip| ip.to_string()).unwrap_or_default()),
        "status.hostIP" => Some(pod.host_ip.to_string()),
        _ => None,
    }
}

/// The guest's argv: `command` (or the container name when there is none) followed by `args`,
/// with `$(VAR)` references to the environment expanded.
pub(crate) fn argv(container: &Container, env: &[(String, String)]) -> Vec<String> {
    let vars = lookup(env);
    let command = match &container.command {
        Some(command) if !command.is_empty() => command.clone(),
        _ => vec![container.name.clone()],
    };
    command
        .iter()
        .chain(container.args.iter().flatten())
        .map(|arg| expand(arg, &vars))
        .collect()
}

/// Kubernetes variable expansion: `$(NAME)` becomes the value of `NAME` if it is defined and
/// stays as written otherwise; `$$` is a literal `$`.
pub(crate) fn expand(input: &str, vars: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            match vars.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
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
            node_name: "node-a".into(),
            pod_ip: Some("127.1.0.2".parse().expect("ip")),
            host_ip: "127.0.0.1".parse().expect("ip"),
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
    fn environment_values_field_refs_and_references() {
        let c = container(json!({"name": "c", "env": [
            {"name": "GREETING", "value": "hello"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "MSG", "value": "$(GREETING) from $(POD), $(UNKNOWN) $$(GREETING)"},
            {"name": "EMPTY"}
        ]}));
        let env = environment(&c, &facts());
        let expected: Vec<(String, String)> = [
            ("GREETING", "hello"),
            ("POD", "web-1"),
            ("NS", "shop"),
            ("IP", "127.1.0.2"),
            ("NODE", "node-a"),
            ("MSG", "hello from web-1, $(UNKNOWN) $(GREETING)"),
            ("EMPTY", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(env, expected);
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
    fn expand_leaves_malformed_references_alone() {
        let vars = HashMap::from([("A", "1")]);
        assert_eq!(expand("$(A)$(A", &vars), "1$(A");
        assert_eq!(expand("cost: $5 $", &vars), "cost: $5 $");
        assert_eq!(expand("$$$(A)", &vars), "$1");
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
