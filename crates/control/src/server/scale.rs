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
    mut desired: impl FnMut(Value) -> Result<Value, ApiError> + Send,
) -> Result<Value, ApiError> {
    let updated = objects
        .update(res, ns, name, Subresource::Scale, dry_run, |current| {
            let scale = desired(scale_of(current))?;
            let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
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

/// PATCH of a Scale.
pub fn patched(scale: Value, patch: Patch) -> Result<Value, ApiError> {
    apply_patch(scale, patch, "Scale")
}
