//! `herd apply -f` and `herd delete -f`: create, update or delete the objects of a manifest.
//!
//! Updates are kubectl's client-side apply: the applied manifest is remembered in the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation, and the next apply starts from the
//! live object, removes the fields the previous manifest had and the new one dropped, and overlays
//! the new manifest. Fields set by the server (defaults, allocated IPs, status) survive.

use std::path::Path;

use anyhow::anyhow;
use kube::Client;
use kube::api::{DeleteParams, DynamicObject, PostParams};
use serde_json::{Map, Value};

use super::errors::from_kube;
use super::manifest::{Manifest, read_objects, resolve, type_name};

/// Where kubectl (and herd) keeps the manifest of the last apply.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What one apply did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

impl Applied {
    fn word(self) -> &'static str {
        match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        }
    }
}

/// Applies every object of `path`, printing `pod/hello created` (or `configured`, `unchanged`)
/// for each. Objects after a failed one are still applied; the failures are reported at the end.
pub async fn apply_file(client: &Client, path: &Path, default_ns: &str) -> anyhow::Result<()> {
    let objects = read_objects(path)?;
    if objects.is_empty() {
        return Err(anyhow!("no objects passed to apply"));
    }
    // One at a time, in file order: a Namespace must exist before the objects in it.
    let mut results = Vec::new();
    for object in objects {
        let result = match resolve(object, default_ns) {
            Ok(manifest) => apply_one(client, &manifest).await.map(|applied| {
                let kind = type_name(manifest.info);
                println!("{kind}/{} {}", manifest.name, applied.word());
            }),
            Err(e) => Err(e),
        };
        results.push(result);
    }
    report_failures(results)
}

/// Deletes every object of `path`, printing `pod "hello" deleted` for each.
pub async fn delete_file(client: &Client, path: &Path, default_ns: &str) -> anyhow::Result<()> {
    let objects = read_objects(path)?;
    let mut results = Vec::new();
    for object in objects {
        let result = match resolve(object, default_ns) {
            Ok(m) => delete(client, m.info, &m.name, m.namespace.as_deref()).await,
            Err(e) => Err(e),
        };
        results.push(result);
    }
    report_failures(results)
}

/// Deletes one object and prints `pod "hello" deleted`.
pub async fn delete(
    client: &Client,
    info: &'static herd_api::resources::ResourceInfo,
    name: &str,
    namespace: Option<&str>,
) -> anyhow::Result<()> {
    super::api(client, info, namespace)
        .delete(name, &DeleteParams::default())
        .await
        .map_err(from_kube)?;
    println!("{} \"{name}\" deleted", type_name(info));
    Ok(())
}

/// Prints every failure but the last to stderr and returns the last, so the binary's single
/// `error:` line is preceded by the others.
fn report_failures(results: impl IntoIterator<Item = anyhow::Result<()>>) -> anyhow::Result<()> {
    let mut last = None;
    for result in results {
        if let Err(e) = result
            && let Some(previous) = last.replace(e)
        {
            eprintln!("error: {previous:#}");
        }
    }
    last.map_or(Ok(()), Err)
}

async fn apply_one(client: &Client, manifest: &Manifest) -> anyhow::Result<Applied> {
    let api = super::api(client, manifest.info, manifest.namespace.as_deref());
    let desired = with_last_applied(&manifest.object)?;
    let live = api.get_opt(&manifest.name).await.map_err(from_kube)?;
    let Some(live) = live else {
        let object: DynamicObject = serde_json::from_value(desired)?;
        api.create(&PostParams::default(), &object)
            .await
            .map_err(from_kube)?;
        return Ok(Applied::Created);
    };
    let live = serde_json::to_value(&live)?;
    if contains(&live, &desired) {
        return Ok(Applied::Unchanged);
    }
    let last = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    let mut merged = three_way_merge(&live, last.as_ref(), &desired);
    if let Some(metadata) = merged.get_mut("metadata").and_then(Value::as_object_mut)
        && let Some(version) = live.pointer("/metadata/resourceVersion")
    {
        metadata.insert("resourceVersion".to_string(), version.clone());
    }
    let object: DynamicObject = serde_json::from_value(merged)?;
    api.replace(&manifest.name, &PostParams::default(), &object)
        .await
        .map_err(from_kube)?;
    Ok(Applied::Configured)
}

/// The manifest as sent: without `status` (the server owns it) and with the last-applied
/// annotation holding the manifest itself.
fn with_last_applied(object: &Value) -> anyhow::Result<Value> {
    let Some(mut fields) = object.as_object().cloned() else {
        return Err(anyhow!("the manifest is not an object"));
    };
    fields.remove("status");
    if let Some(Value::Object(metadata)) = fields.get_mut("metadata") {
        for server_owned in ["resourceVersion", "uid", "creationTimestamp", "generation"] {
            metadata.remove(server_owned);
        }
        if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
            annotations.remove(LAST_APPLIED);
        }
    }
    let remembered = format!("{}\n", serde_json::to_string(&fields)?);
    let metadata = fields
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(metadata) = metadata {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(annotations) = annotations {
            annotations.insert(LAST_APPLIED.to_string(), Value::String(remembered));
        }
    }
    Ok(Value::Object(fields))
}

/// Starts from `live`, removes the fields `last` had and `desired` lacks, then overlays `desired`
/// (objects merged key by key, everything else replaced; an explicit `null` removes the field).
pub fn three_way_merge(live: &Value, last: Option<&Value>, desired: &Value) -> Value {
    let (Value::Object(live), Value::Object(wanted)) = (live, desired) else {
        return desired.clone();
    };
    let mut out = live.clone();
    if let Some(Value::Object(last)) = last {
        for key in last.keys() {
            if !wanted.contains_key(key) {
                out.remove(key);
            }
        }
    }
    for (key, value) in wanted {
        if value.is_null() {
            out.remove(key);
            continue;
        }
        let merged = match live.get(key) {
            Some(current) => three_way_merge(current, last.and_then(|l| l.get(key)), value),
            None => value.clone(),
        };
        out.insert(key.clone(), merged);
    }
    Value::Object(out)
}

/// Whether `live` already holds everything `desired` says: objects key by key (extra live keys,
/// like server defaults, are fine), arrays element by element, scalars equal.
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (_, Value::Null) => true,
        (Value::Object(live), Value::Object(desired)) => desired.iter().all(|(key, value)| {
            live.get(key)
                .map_or(value.is_null(), |current| contains(current, value))
        }),
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len() && live.iter().zip(desired).all(|(l, d)| contains(l, d))
        }
        _ => live == desired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_keeps_server_fields_and_drops_removed_ones() {
        let live = json!({
            "metadata": {"name": "web", "uid": "u1", "resourceVersion": "7",
                         "labels": {"app": "web", "tier": "front"}},
            "spec": {"clusterIP": "127.2.0.1", "ports": [{"port": 80, "protocol": "TCP"}],
                     "selector": {"app": "web"}},
            "status": {"loadBalancer": {}}
        });
        let last = json!({"metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
                          "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}});
        let desired = json!({"metadata": {"name": "web", "labels": {"app": "web"}},
                             "spec": {"ports": [{"port": 8080}], "selector": {"app": "web"}}});
        let merged = three_way_merge(&live, Some(&last), &desired);
        assert_eq!(
            merged,
            json!({
                "metadata": {"name": "web", "uid": "u1", "resourceVersion": "7", "labels": {"app": "web"}},
                "spec": {"clusterIP": "127.2.0.1", "ports": [{"port": 8080}], "selector": {"app": "web"}},
                "status": {"loadBalancer": {}}
            })
        );
    }

    #[test]
    fn merge_without_last_applied_only_overlays() {
        let live = json!({"data": {"a": "1", "b": "2"}});
        let merged = three_way_merge(&live, None, &json!({"data": {"a": "3", "b": null}}));
        assert_eq!(merged, json!({"data": {"a": "3"}}));
    }

    #[test]
    fn contains_ignores_server_defaults_but_not_changes() {
        let live = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "c", "image": "r/app:v1", "imagePullPolicy": "IfNotPresent"}]}}}});
        let same = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "c", "image": "r/app:v1"}]}}}});
        assert!(contains(&live, &same));
        let new_image = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "r/app:v2"}]}}}});
        assert!(!contains(&live, &new_image));
        let extra_container = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "c"}, {"name": "d"}]}}}});
        assert!(!contains(&live, &extra_container));
        assert!(!contains(&live, &json!({"spec": {"paused": true}})));
    }

    #[test]
    fn last_applied_annotation_remembers_the_manifest_without_status() {
        let manifest = json!({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "c", "annotations": {"team": "a"}},
                              "data": {"k": "v"}, "status": {"x": 1}});
        let desired = with_last_applied(&manifest).expect("object");
        assert!(desired.get("status").is_none());
        assert_eq!(
            desired.pointer("/metadata/annotations/team"),
            Some(&json!("a"))
        );
        let remembered = desired
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(LAST_APPLIED))
            .and_then(Value::as_str)
            .expect("annotation");
        let remembered: Value = serde_json::from_str(remembered).expect("json");
        assert_eq!(remembered.pointer("/data/k"), Some(&json!("v")));
        assert!(
            remembered
                .pointer("/metadata/annotations")
                .is_some_and(|a| a.get(LAST_APPLIED).is_none())
        );

        // Applying the same manifest twice yields the same annotation: `unchanged` is reachable.
        assert_eq!(with_last_applied(&desired).expect("object"), desired);
    }

    #[test]
    fn report_failures_returns_the_last_error() {
        assert!(report_failures([Ok(()), Ok(())]).is_ok());
        let e =
            report_failures([Err(anyhow!("one")), Ok(()), Err(anyhow!("two"))]).expect_err("fails");
        assert_eq!(e.to_string(), "two");
    }
}
