//! The `scale` subresource (autoscaling/v1 `Scale`) of Deployments, ReplicaSets and ReplicationControllers.

use herd_api::ResourceInfo;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::objects::{Objects, Patch, Subresource, apply_patch};

/// The Scale view of a Deployment or ReplicaSet.
pub fn scale_of(obj: &Value) -> Value {
    let md = &obj["metadata"];
    // A LabelSelector's matchLabels; a ReplicationController's selector is the plain map itself.
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .or_else(|| {
            obj.pointer("/spec/selector").filter(|m| {
                m.as_object()
                    .is_some_and(|m| m.values().all(Value::is_string))
            })
        })
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": md["name"], "namespace": md["namespace"], "uid": md["uid"],
            "resourceVersion": md["resourceVersion"], "creationTimestamp": md["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

/// Changes `spec.replicas` through a Scale: `desired` maps the current Scale to the wanted one. The write is
/// recorded in the object's managedFields for the `scale` subresource, with the object's API version.
pub async fn update(
    objects: &Objects,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    dry_run: bool,
    activator: bool,
    mut desired: impl FnMut(Value) -> Result<Value, ApiError> + Send,
) -> Result<Value, ApiError> {
    let updated = objects
        .update(res, ns, name, Subresource::Scale, dry_run, |current| {
            let scale = desired(scale_of(current))?;
            let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
            if activator {
                admit_activator(res, current, replicas, name)?;
            }
            if replicas < 0 {
                return Err(ApiError::Invalid {
                    message: format!("Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"),
                    group: "autoscaling".into(),
                    kind: "Scale".into(),
                    name: name.into(),
                    causes: vec![herd_api::Cause::invalid("spec.replicas", replicas, "must be greater than or equal to 0")],
                });
            }
            let mut obj = current.clone();
            obj["spec"]["replicas"] = json!(replicas);
            // A resourceVersion in the Scale is a precondition on the object.
            obj["metadata"]["resourceVersion"] = scale.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
            Ok(obj)
        })
        .await?;
    Ok(scale_of(&updated))
}

/// Whether `user`'s scale writes are an activator's: a proxy (`system:kube-proxy`, or a node, whose
/// identity `herd node`'s proxy runs with) holding a connection to a Service at zero. RBAC grants them
/// `patch` of `deployments/scale` (`system:herd:activator`); [`admit_activator`] narrows it further.
pub fn is_activator(user: &herd_authz::UserInfo) -> bool {
    (user.name == ACTIVATOR_USER || user.node_name().is_some())
        && !user.in_group(herd_authz::attributes::SYSTEM_MASTERS)
}

/// kube-proxy's user name, the activator's in `herd up`.
const ACTIVATOR_USER: &str = "system:kube-proxy";

/// An activator's scale write, admitted as NodeRestriction admits a node's writes: only the wake-up of
/// a Deployment that scales to zero (`autoscaling.herd.dev/idle-timeout`), from 0 to 1 replica. Every
/// other decision (to zero, scale-out) is the scale-to-zero controller's.
pub fn admit_activator(
    res: &'static ResourceInfo,
    current: &Value,
    replicas: i64,
    name: &str,
) -> Result<(), ApiError> {
    let opted_in = current
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(herd_api::autoscaling::IDLE_TIMEOUT))
        .is_some();
    let at_zero = current.pointer("/spec/replicas").and_then(Value::as_i64) == Some(0);
    if res.kind == "Deployment" && opted_in && at_zero && replicas == 1 {
        return Ok(());
    }
    let resource = if res.group.is_empty() {
        res.plural.to_string()
    } else {
        format!("{}.{}", res.plural, res.group)
    };
    Err(ApiError::Forbidden {
        message: format!(
            "{resource} \"{name}\" is forbidden: an activator may only scale a Deployment annotated {} from 0 to 1 replica",
            herd_api::autoscaling::IDLE_TIMEOUT
        ),
        group: res.group.to_string(),
        kind: res.plural.to_string(),
        name: name.to_string(),
    })
}

/// PATCH of a Scale.
pub fn patched(scale: Value, patch: Patch) -> Result<Value, ApiError> {
    apply_patch(scale, patch, "Scale")
}
