//! `herd apply -f` and `herd delete -f`: create, update or delete the objects of a manifest.
//!
//! Apply is server-side apply: each object is sent whole as an `application/apply-patch+yaml` PATCH
//! with `fieldManager=herd`, and the API server merges it (creating the object when absent). herd
//! owns exactly the fields of its manifests: a field another manager set (`kubectl scale`'s
//! replicas, a controller's annotations) survives an apply that does not name it, and a field
//! herd set before and the manifest dropped is removed — list elements included.

use std::path::Path;

use anyhow::anyhow;
use kube::Client;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::Value;

use super::errors::from_kube;
use super::manifest::{Manifest, read_objects, resolve, type_name};

/// The field manager herd's applies are recorded under in `managedFields`.
pub const FIELD_MANAGER: &str = "herd";

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

    /// From the object before the apply (`None`: it did not exist) and after: unchanged when
    /// they differ in nothing but what the server writes on its own (resourceVersion,
    /// managedFields, status), so neither a server that records a no-op apply nor a controller's
    /// status write in between turns an unchanged object into a configured one.
    fn compare(before: Option<&Value>, after: &Value) -> Self {
        match before {
            None => Applied::Created,
            Some(before) if comparable(before) == comparable(after) => Applied::Unchanged,
            Some(_) => Applied::Configured,
        }
    }
}

/// Applies every object of `path`, printing `pod/hello created` (or `configured`, `unchanged`)
/// for each. Objects after a failed one are still applied; the failures are reported at the end.
/// With `force_conflicts`, herd takes over fields another manager owns instead of failing.
pub async fn apply_file(
    client: &Client,
    path: &Path,
    default_ns: &str,
    force_conflicts: bool,
) -> anyhow::Result<()> {
    let objects = read_objects(path)?;
    if objects.is_empty() {
        return Err(anyhow!("no objects passed to apply"));
    }
    // One at a time, in file order: a Namespace must exist before the objects in it.
    let mut results = Vec::new();
    for object in objects {
        let result = match resolve(object, default_ns) {
            Ok(manifest) => apply_one(client, &manifest, force_conflicts)
                .await
                .map(|applied| {
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

/// Server-side applies one object; what it did comes from the object before and after.
async fn apply_one(client: &Client, manifest: &Manifest, force: bool) -> anyhow::Result<Applied> {
    let api = super::api(client, manifest.info, manifest.namespace.as_deref());
    let before = api.get_opt(&manifest.name).await.map_err(from_kube)?;
    let before = before.map(serde_json::to_value).transpose()?;
    let mut params = PatchParams::apply(FIELD_MANAGER);
    params.force = force;
    let applied = api
        .patch(&manifest.name, &params, &Patch::Apply(&manifest.object))
        .await
        .map_err(apply_failure)?;
    Ok(Applied::compare(
        before.as_ref(),
        &serde_json::to_value(applied)?,
    ))
}

/// An object without the fields the server writes on its own.
fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(fields) = object.as_object_mut() {
        fields.remove("status");
        if let Some(Value::Object(metadata)) = fields.get_mut("metadata") {
            metadata.remove("resourceVersion");
            metadata.remove("managedFields");
        }
    }
    object
}

/// A conflict with another field manager as kubectl prints it (the server's message alone, on one
/// line); any other failure as every client error.
fn apply_failure(err: kube::Error) -> anyhow::Error {
    match err {
        kube::Error::Api(status)
            if status.code == 409 && status.message.starts_with("Apply failed") =>
        {
            anyhow!(
                "{} (use --force-conflicts to take them over)",
                status.message.replace('\n', " ")
            )
        }
        other => from_kube(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn before_and_after_tell_what_an_apply_did() {
        let before = json!({"metadata": {"name": "c", "resourceVersion": "3",
                                         "managedFields": [{"manager": "herd"}]},
                            "data": {"a": "1"}});
        assert_eq!(Applied::compare(None, &before), Applied::Created);
        let mut after = before.clone();
        after["metadata"]["resourceVersion"] = json!("4");
        after["metadata"]["managedFields"][0]["time"] = json!("2026-01-01T00:00:00Z");
        after["status"] = json!({"observedGeneration": 1});
        assert_eq!(Applied::compare(Some(&before), &after), Applied::Unchanged);
        after["data"]["a"] = json!("2");
        assert_eq!(Applied::compare(Some(&before), &after), Applied::Configured);
    }

    #[test]
    fn conflicts_print_on_one_line() {
        let status = kube::core::Status::failure(
            "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.replicas\n- .spec.paused",
            "Conflict",
        )
        .with_code(409);
        let err = apply_failure(kube::Error::Api(status.boxed()));
        assert_eq!(
            err.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"a\": - .spec.replicas - .spec.paused \
             (use --force-conflicts to take them over)"
        );
        let status = kube::core::Status::failure("pods \"x\" not found", "NotFound").with_code(404);
        let err = apply_failure(kube::Error::Api(status.boxed()));
        assert_eq!(
            err.to_string(),
            "Error from server (NotFound): pods \"x\" not found"
        );
    }

    #[test]
    fn report_failures_returns_the_last_error() {
        assert!(report_failures([Ok(()), Ok(())]).is_ok());
        let e =
            report_failures([Err(anyhow!("one")), Ok(()), Err(anyhow!("two"))]).expect_err("fails");
        assert_eq!(e.to_string(), "two");
    }
}
