//! A container's environment, resolved as the kubelet does: `envFrom` (ConfigMaps and Secrets,
//! with an optional prefix) first, then `env` in order — literal values with `$(VAR)` expansion
//! of what came before, `configMapKeyRef`, `secretKeyRef`, `fieldRef` and `resourceFieldRef`.
//!
//! [`resolve_env`] is a pure function over the objects the node's shared ConfigMap/Secret cache
//! (`reflector`) holds for the pod ([`ConfigObjects`]): as the kubelet's configmap/secret managers
//! serve volumes and environments alike, no pod GETs what its environment refers to. Errors read
//! like the kubelet's `CreateContainerConfigError` messages.

use std::collections::BTreeMap;
use std::net::IpAddr;

use herd_api::quantity;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret,
};

/// Why a container's environment could not be built (the kubelet's
/// `CreateContainerConfigError`); the message is what the kubelet reports.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyMissing {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyMissing {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
    #[error("unsupported container resource : {0}")]
    UnsupportedResource(String),
    #[error("container {0:?} not found in the pod")]
    UnknownContainer(String),
    #[error("invalid quantity {0:?}")]
    BadQuantity(String),
}

/// The node's allocatable resources: what `resourceFieldRef` reports for an unset limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeAllocatable {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub ephemeral_storage_bytes: i64,
}

/// What the node knows about a pod beyond its spec.
#[derive(Clone, Debug)]
pub struct EnvFacts {
    /// The pod's IPs, primary first (`status.podIP`, `status.podIPs`).
    pub pod_ips: Vec<IpAddr>,
    /// The node's IP (`status.hostIP`, `status.hostIPs`).
    pub host_ip: IpAddr,
    pub allocatable: NodeAllocatable,
}

/// ConfigMaps and Secrets of the pod's namespace by name; an absent name was not found.
#[derive(Clone, Debug, Default)]
pub struct ConfigObjects {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
}

/// The ConfigMap and Secret names the `env` and `envFrom` of any of `pod`'s containers (init
/// containers included) refer to: what the pod registers with the node's cache for its
/// environments, beside what its volumes use.
pub(crate) fn pod_referenced_names(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let (mut config_maps, mut secrets) = (Vec::new(), Vec::new());
    let spec = pod.spec.iter();
    let containers = spec.flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers));
    for container in containers {
        let (cms, ss) = referenced_names(container);
        config_maps.extend(cms);
        secrets.extend(ss);
    }
    config_maps.sort();
    config_maps.dedup();
    secrets.sort();
    secrets.dedup();
    (config_maps, secrets)
}

/// The ConfigMap and Secret names a container's `env` and `envFrom` refer to.
fn referenced_names(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut config_maps = Vec::new();
    let mut secrets = Vec::new();
    for from in container.env_from.iter().flatten() {
        config_maps.extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
        secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
    }
    for var in container.env.iter().flatten() {
        if let Some(source) = &var.value_from {
            config_maps.extend(source.config_map_key_ref.as_ref().map(|r| r.name.clone()));
            secrets.extend(source.secret_key_ref.as_ref().map(|r| r.name.clone()));
        }
    }
    config_maps.sort();
    config_maps.dedup();
    secrets.sort();
    secrets.dedup();
    (config_maps, secrets)
}

/// The environment of `container` in `pod`, in the kubelet's order and with its rules: `envFrom`
/// sources in order (later ones win; keys that are not valid variable names are skipped), then
/// each `env` entry (replacing an earlier variable of the same name). A missing optional source
/// or key is skipped; a missing required one is an error.
///
/// # Errors
///
/// The kubelet's `CreateContainerConfigError` causes, see [`EnvError`].
pub fn resolve_env(
    container: &Container,
    pod: &Pod,
    facts: &EnvFacts,
    objects: &ConfigObjects,
    service_env: &[(String, String)],
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut env = Env::default();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let entries: Vec<(String, String)> = if let Some(r) = &from.config_map_ref {
            match objects.config_maps.get(&r.name) {
                Some(cm) => cm.data.clone().unwrap_or_default().into_iter().collect(),
                None if r.optional == Some(true) => continue,
                None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
            }
        } else if let Some(r) = &from.secret_ref {
            match objects.secrets.get(&r.name) {
                Some(secret) => secret
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                    .collect(),
                None if r.optional == Some(true) => continue,
                None => return Err(EnvError::SecretNotFound(r.name.clone())),
            }
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (key, value) in entries {
            let name = format!("{prefix}{key}");
            if is_env_var_name(&name) {
                env.set(name, value);
            } else {
                invalid.push(name);
            }
        }
        if !invalid.is_empty() {
            tracing::warn!(
                pod = ?pod.metadata.name, keys = ?invalid,
                "envFrom keys skipped since they are invalid environment variable names"
            );
        }
    }

    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) if !value.is_empty() => expand(value, |name| {
                env.get(name).or_else(|| {
                    service_env
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.as_str())
                })
            }),
            (_, Some(source)) => {
                if let Some(r) = &source.config_map_key_ref {
                    let Some(cm) = objects.config_maps.get(&r.name) else {
                        if r.optional == Some(true) {
                            continue;
                        }
                        return Err(EnvError::ConfigMapNotFound(r.name.clone()));
                    };
                    match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(value) => value.clone(),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(EnvError::ConfigMapKeyMissing {
                                key: r.key.clone(),
                                namespace: namespace.clone(),
                                name: r.name.clone(),
                            });
                        }
                    }
                } else if let Some(r) = &source.secret_key_ref {
                    let Some(secret) = objects.secrets.get(&r.name) else {
                        if r.optional == Some(true) {
                            continue;
                        }
                        return Err(EnvError::SecretNotFound(r.name.clone()));
                    };
                    match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(value) => String::from_utf8_lossy(&value.0).into_owned(),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(EnvError::SecretKeyMissing {
                                key: r.key.clone(),
                                namespace: namespace.clone(),
                                name: r.name.clone(),
                            });
                        }
                    }
                } else if let Some(field) = &source.field_ref {
                    field_value(field, pod, facts)?
                } else if let Some(field) = &source.resource_field_ref {
                    resource_value(field, container, pod, &facts.allocatable)?
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        env.set(var.name.clone(), value);
    }
    // The Services' variables come after the container's own and never replace them (the kubelet's order).
    for (name, value) in service_env {
        if env.get(name).is_none() {
            env.vars.push((name.clone(), value.clone()));
        }
    }
    Ok(env.vars)
}

/// Variables in insertion order; setting an existing name replaces its value in place.
#[derive(Default)]
struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, name: String, value: String) {
        match self.vars.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name, value)),
        }
    }
}

/// The API server's (relaxed, GA since 1.34) rule for environment variable names: not empty,
/// printable ASCII, no `=`.
fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

/// Kubernetes' `$(VAR)` expansion (k8s.io/kubernetes third_party/forked/golang/expansion):
/// `$$` is `$`, `$(NAME)` is NAME's value or stays as written when undefined, an unclosed `$(`
/// and any other `$x` stay as written.
pub fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            match lookup(name) {
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

pub(crate) fn field_value(
    field: &ObjectFieldSelector,
    pod: &Pod,
    facts: &EnvFacts,
) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = field.field_path.as_str();
    let joined = |ips: &[IpAddr]| {
        ips.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => facts
            .pod_ips
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
        "status.podIPs" => joined(&facts.pod_ips),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.to_string(),
        _ => {
            let subscript = |prefix: &str| {
                path.strip_prefix(prefix)
                    .and_then(|p| p.strip_suffix("']"))
                    .map(str::to_owned)
            };
            if let Some(key) = subscript("metadata.labels['") {
                lookup_map(meta.labels.as_ref(), &key)
            } else if let Some(key) = subscript("metadata.annotations['") {
                lookup_map(meta.annotations.as_ref(), &key)
            } else {
                return Err(EnvError::UnsupportedFieldPath(path.to_owned()));
            }
        }
    })
}

fn lookup_map(map: Option<&BTreeMap<String, String>>, key: &str) -> String {
    map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
}

/// The downward API's rendering of labels/annotations: sorted `key="value"` lines.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `resourceFieldRef`: the named container's request or limit divided by `divisor` (default
/// 1), rounded up; an unset limit is the node's allocatable, as the kubelet defaults it.
pub(crate) fn resource_value(
    field: &ResourceFieldSelector,
    container: &Container,
    pod: &Pod,
    allocatable: &NodeAllocatable,
) -> Result<String, EnvError> {
    let target = match field.container_name.as_deref() {
        None | Some("") => container,
        Some(name) => {
            find_container(pod, name).ok_or_else(|| EnvError::UnknownContainer(name.to_owned()))?
        }
    };
    let resources = target.resources.as_ref();
    let (section, resource) = field
        .resource
        .split_once('.')
        .ok_or_else(|| EnvError::UnsupportedResource(field.resource.clone()))?;
    let list = match section {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(EnvError::UnsupportedResource(field.resource.clone())),
    };
    let is_cpu = resource == "cpu";
    let parse = |text: &str| {
        if is_cpu {
            quantity::cpu_millis(text)
        } else {
            quantity::value(text)
        }
        .ok_or_else(|| EnvError::BadQuantity(text.to_owned()))
    };
    let set = list.and_then(|l| l.get(resource)).map(|q| parse(&q.0));
    let amount = match (set, section, resource) {
        (Some(v), _, _) => v?,
        (None, "limits", "cpu") => allocatable.cpu_millis,
        (None, "limits", "memory") => allocatable.memory_bytes,
        (None, "limits", "ephemeral-storage") => allocatable.ephemeral_storage_bytes,
        (None, _, "cpu" | "memory" | "ephemeral-storage") => 0,
        _ => return Err(EnvError::UnsupportedResource(field.resource.clone())),
    };
    let divisor = match field.divisor.as_ref().map(|d| parse(&d.0)).transpose()? {
        Some(d) if d > 0 => d,
        _ if is_cpu => 1000,
        _ => 1,
    };
    // Quantities parse as non-negative and the divisor is positive: ceil(amount / divisor).
    let amount = u64::try_from(amount).unwrap_or(0);
    let divisor = u64::try_from(divisor).unwrap_or(1);
    Ok(amount.div_ceil(divisor).to_string())
}

pub(crate) fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn container(value: Value) -> Container {
        serde_json::from_value(value).expect("valid Container")
    }

    fn pod(containers: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web-1", "namespace": "shop", "uid": "u-1",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"note": "say \"hi\""}
            },
            "spec": {"nodeName": "node-a", "serviceAccountName": "robot", "containers": containers},
        }))
        .expect("valid Pod")
    }

    fn facts() -> EnvFacts {
        EnvFacts {
            pod_ips: vec![
                "127.1.0.2".parse().expect("ip"),
                "fd00::2".parse().expect("ip"),
            ],
            host_ip: "127.0.0.1".parse().expect("ip"),
            allocatable: NodeAllocatable {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
                ephemeral_storage_bytes: 100 << 30,
            },
        }
    }

    fn objects() -> ConfigObjects {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "cfg", "namespace": "shop"},
            "data": {"MODE": "fast", "LEVEL": "3", "bad=key": "x"}
        }))
        .expect("cm");
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "creds", "namespace": "shop"},
            // "hunter2" and "admin", base64 as on the wire
            "data": {"PASSWORD": "aHVudGVyMg==", "USER": "YWRtaW4="}
        }))
        .expect("secret");
        ConfigObjects {
            config_maps: BTreeMap::from([("cfg".to_owned(), cm)]),
            secrets: BTreeMap::from([("creds".to_owned(), secret)]),
        }
    }

    fn resolve(c: Value) -> Result<Vec<(String, String)>, EnvError> {
        let c = container(c);
        let p = pod(json!([c.clone()]));
        resolve_env(&c, &p, &facts(), &objects(), &[])
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn env_from_then_env_with_prefix_override_and_invalid_keys_skipped() {
        let env = resolve(json!({"name": "c", "envFrom": [
            {"configMapRef": {"name": "cfg"}},
            {"secretRef": {"name": "creds"}, "prefix": "DB_"},
            {"configMapRef": {"name": "absent", "optional": true}},
        ], "env": [
            {"name": "MODE", "value": "slow"},
            {"name": "URL", "value": "$(DB_USER):$(DB_PASSWORD)@$(LEVEL)"},
        ]}))
        .expect("resolves");
        assert_eq!(
            env,
            pairs(&[
                ("LEVEL", "3"),
                ("MODE", "slow"),
                ("DB_PASSWORD", "hunter2"),
                ("DB_USER", "admin"),
                ("URL", "admin:hunter2@3"),
            ])
        );
    }

    #[test]
    fn key_refs_optional_and_required() {
        let env = resolve(json!({"name": "c", "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "USER"}}},
            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": true}}},
            {"name": "D", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}},
            {"name": "E", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}},
        ]}))
        .expect("resolves");
        assert_eq!(env, pairs(&[("A", "fast"), ("B", "admin")]));

        let err = |var: Value| resolve(json!({"name": "c", "env": [var]})).expect_err("fails");
        assert_eq!(
            err(json!({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}}))
                .to_string(),
            "configmap \"x\" not found"
        );
        assert_eq!(
            err(
                json!({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}})
            )
            .to_string(),
            "couldn't find key k in ConfigMap shop/cfg"
        );
        assert_eq!(
            err(json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}))
                .to_string(),
            "secret \"s\" not found"
        );
        assert_eq!(
            err(json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}))
                .to_string(),
            "couldn't find key k in Secret shop/creds"
        );
        let missing_from = resolve(json!({"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}));
        assert_eq!(missing_from, Err(EnvError::SecretNotFound("s".into())));
    }

    #[test]
    fn field_refs() {
        let field = |path: &str| {
            let env = resolve(json!({"name": "c", "env": [
                {"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}
            ]}))?;
            Ok::<_, EnvError>(env[0].1.clone())
        };
        let cases = [
            ("metadata.name", "web-1"),
            ("metadata.namespace", "shop"),
            ("metadata.uid", "u-1"),
            ("metadata.labels['app']", "web"),
            ("metadata.labels['none']", ""),
            ("metadata.annotations['note']", "say \"hi\""),
            ("metadata.labels", "app=\"web\"\ntier=\"front\""),
            ("metadata.annotations", "note=\"say \\\"hi\\\"\""),
            ("spec.nodeName", "node-a"),
            ("spec.serviceAccountName", "robot"),
            ("status.podIP", "127.1.0.2"),
            ("status.podIPs", "127.1.0.2,fd00::2"),
            ("status.hostIP", "127.0.0.1"),
        ];
        for (path, expected) in cases {
            assert_eq!(field(path).as_deref(), Ok(expected), "{path}");
        }
        assert_eq!(
            field("spec.bogus").map_err(|e| e.to_string()),
            Err("unsupported fieldPath: spec.bogus".to_owned())
        );
    }

    #[test]
    fn resource_field_refs_round_up_and_default_limits_to_allocatable() {
        let c = json!({"name": "c",
        "resources": {"limits": {"cpu": "250m", "memory": "100Mi"}, "requests": {"cpu": "1500m"}},
        "env": [
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
            {"name": "REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},
            {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "MEM_G", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1G"}}},
            {"name": "REQ_MEM", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}},
        ]});
        let env = resolve(c).expect("resolves");
        assert_eq!(
            env,
            pairs(&[
                ("CPU", "1"),
                ("CPU_M", "250"),
                ("REQ", "2"),
                ("MEM_MI", "100"),
                ("MEM_G", "1"),
                ("REQ_MEM", "0"),
            ])
        );

        // No limits: the node's allocatable; containerName picks another container.
        let me = container(json!({"name": "me", "env": [
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Gi"}}},
            {"name": "SIDE", "valueFrom": {"resourceFieldRef": {"containerName": "side", "resource": "limits.memory", "divisor": "1Mi"}}},
        ]}));
        let side = json!({"name": "side", "resources": {"limits": {"memory": "64Mi"}}});
        let p = pod(json!([me.clone(), side]));
        let env = resolve_env(&me, &p, &facts(), &objects(), &[]).expect("resolves");
        assert_eq!(env, pairs(&[("CPU", "4"), ("MEM", "8"), ("SIDE", "64")]));

        let bad = resolve(json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}
        ]}));
        assert_eq!(bad, Err(EnvError::UnsupportedResource("limits.gpu".into())));
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let vars = |name: &str| match name {
            "A" => Some("1"),
            "EMPTY" => Some(""),
            _ => None,
        };
        let cases = [
            ("$(A)", "1"),
            ("x$(A)y$(A)", "x1y1"),
            ("$(EMPTY)!", "!"),
            ("$(B)", "$(B)"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$1"),
            ("$(A", "$(A"),
            ("cost: $5 $", "cost: $5 $"),
            ("$", "$"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, vars), expected, "{input}");
        }
    }

    #[test]
    fn later_env_replaces_earlier_and_value_from_is_not_expanded() {
        let env = resolve(json!({"name": "c", "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "$(A)"},
            {"name": "A", "value": "2"},
            {"name": "LIT", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
            {"name": "EMPTY"},
        ]}))
        .expect("resolves");
        assert_eq!(
            env,
            pairs(&[("A", "2"), ("B", "1"), ("LIT", "fast"), ("EMPTY", "")])
        );
    }

    #[test]
    fn referenced_names_are_deduplicated() {
        let c = container(json!({"name": "c",
        "envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "s"}}],
        "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "a", "key": "k"}}},
            {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "k"}}},
        ]}));
        assert_eq!(
            referenced_names(&c),
            (vec!["a".to_owned(), "b".to_owned()], vec!["s".to_owned()])
        );
    }

    #[test]
    fn a_pod_refers_to_what_any_of_its_containers_refer_to() {
        let mut p = pod(json!([
            {"name": "app", "envFrom": [{"configMapRef": {"name": "b"}}]},
            {"name": "side", "env": [
                {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}},
                {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "b", "key": "k"}}},
            ]},
        ]));
        let init = container(json!({"name": "init", "envFrom": [
            {"configMapRef": {"name": "a"}}, {"secretRef": {"name": "s1"}}
        ]}));
        p.spec.as_mut().expect("spec").init_containers = Some(vec![init]);
        assert_eq!(
            pod_referenced_names(&p),
            (
                vec!["a".to_owned(), "b".to_owned()],
                vec!["s1".to_owned(), "s2".to_owned()]
            )
        );
    }
}
