//! Discovery documents: `/version`, `/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`, in the shape
//! kube-apiserver gives them (legacy discovery; clients that ask for aggregated discovery accept these too).
//!
//! [`verbs`] and [`subresource`] say what herd serves on each resource; the OpenAPI documents are built from
//! the same answers, so discovery and OpenAPI cannot disagree.

use axum::Json;
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use herd_api::ResourceInfo;
use herd_api::resources::{self, RESOURCES};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

pub const KUBERNETES_VERSION: (&str, &str) = ("1", "37");
/// The oldest version whose clients and data this server stays compatible with (one minor back).
const MIN_COMPATIBILITY_VERSION: (&str, &str) = ("1", "36");

/// The verbs herd serves on every resource: `list`/`watch`/`create`/`deletecollection` on the collection,
/// `get`/`update`/`patch`/`delete` on an object.
pub const RESOURCE_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The verbs served on a resource, sorted as kube-apiserver lists them.
pub fn verbs(_res: &ResourceInfo) -> &'static [&'static str] {
    RESOURCE_VERBS
}

/// What a subresource is, as discovery describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubresourceInfo {
    /// Group and version of `kind` when they differ from the parent's (`scale` is `autoscaling/v1`).
    pub group_version: Option<(&'static str, &'static str)>,
    /// Kind of the body read or written at the subresource.
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// Describes subresource `sub` of `res` (one of `res.subresources`).
pub fn subresource(res: &ResourceInfo, sub: &str) -> SubresourceInfo {
    let (group_version, kind, verbs): (_, &'static str, &'static [&'static str]) = match sub {
        "status" => (None, res.kind, &["get", "patch", "update"]),
        "scale" => (
            Some(("autoscaling", "v1")),
            "Scale",
            &["get", "patch", "update"],
        ),
        "log" => (None, res.kind, &["get"]),
        "binding" => (None, "Binding", &["create"]),
        "eviction" => (Some(("policy", "v1")), "Eviction", &["create"]),
        "token" => (
            Some(("authentication.k8s.io", "v1")),
            "TokenRequest",
            &["create"],
        ),
        _ => (None, res.kind, &["get"]),
    };
    SubresourceInfo {
        group_version,
        kind,
        verbs,
    }
}

/// `storageVersionHash` of a resource, computed as kube-apiserver does: the first 8 bytes of
/// SHA-256(`group/version/kind`), base64.
pub fn storage_version_hash(group: &str, version: &str, kind: &str) -> String {
    let digest = Sha256::digest(format!("{group}/{version}/{kind}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

pub async fn version() -> Json<Value> {
    let (major, minor) = KUBERNETES_VERSION;
    let (compat_major, compat_minor) = MIN_COMPATIBILITY_VERSION;
    Json(json!({
        "major": major,
        "minor": minor,
        "emulationMajor": major,
        "emulationMinor": minor,
        "minCompatibilityMajor": compat_major,
        "minCompatibilityMinor": compat_minor,
        "gitVersion": format!("v{major}.{minor}.0-herd.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none (herd is written in Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch(std::env::consts::ARCH)),
    }))
}

/// The architecture as Go (and so kube-apiserver's `platform`) names it.
fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// `/api`. `serverAddressByClientCIDRs` tells every client (`0.0.0.0/0`) the address it reached us at.
pub async fn api_versions(headers: HeaderMap) -> Json<Value> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    Json(api_versions_document(host))
}

fn api_versions_document(host: &str) -> Value {
    let addresses = if host.is_empty() {
        json!([])
    } else {
        json!([{"clientCIDR": "0.0.0.0/0", "serverAddress": host}])
    };
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": addresses,
    })
}

pub async fn api_groups() -> Json<Value> {
    let mut versions = resources::group_versions();
    for gv in super::reviews::group_versions() {
        if !versions.contains(&gv) {
            versions.push(gv);
        }
    }
    let groups: Vec<Value> = versions
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
}

/// `APIResourceList` of a group-version, resources and subresources sorted by name as kube-apiserver does.
pub fn resource_list(group: &str, version: &str) -> Result<Value, ApiError> {
    let mut list = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = Map::new();
        entry.insert("name".into(), json!(r.plural));
        entry.insert("singularName".into(), json!(r.singular));
        entry.insert("namespaced".into(), json!(r.namespaced));
        entry.insert("kind".into(), json!(r.kind));
        entry.insert("verbs".into(), json!(verbs(r)));
        if !r.short_names.is_empty() {
            entry.insert("shortNames".into(), json!(r.short_names));
        }
        if !r.categories.is_empty() {
            entry.insert("categories".into(), json!(r.categories));
        }
        entry.insert(
            "storageVersionHash".into(),
            json!(storage_version_hash(r.group, r.version, r.kind)),
        );
        list.push(Value::Object(entry));
        for sub in r.subresources {
            let info = subresource(r, sub);
            let mut entry = Map::new();
            entry.insert("name".into(), json!(format!("{}/{sub}", r.plural)));
            entry.insert("singularName".into(), json!(""));
            entry.insert("namespaced".into(), json!(r.namespaced));
            if let Some((g, v)) = info.group_version {
                entry.insert("group".into(), json!(g));
                entry.insert("version".into(), json!(v));
            }
            entry.insert("kind".into(), json!(info.kind));
            entry.insert("verbs".into(), json!(info.verbs));
            list.push(Value::Object(entry));
        }
    }
    for review in super::reviews::REVIEWS
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        list.push(json!({
            "name": review.plural,
            "singularName": review.kind.to_ascii_lowercase(),
            "namespaced": false,
            "kind": review.kind,
            "verbs": ["create"],
        }));
    }
    if list.is_empty() {
        return Err(ApiError::NotFound {
            message: "the server could not find the requested resource".into(),
            group: String::new(),
            kind: String::new(),
            name: String::new(),
        });
    }
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(list: &'a Value, name: &str) -> &'a Value {
        list["resources"]
            .as_array()
            .and_then(|r| r.iter().find(|e| e["name"] == name))
            .unwrap_or_else(|| panic!("{name} not in {list}"))
    }

    #[test]
    fn storage_version_hashes_match_kube_apiserver() {
        // Values served by kube-apiserver for pods and deployments.
        assert_eq!(storage_version_hash("", "v1", "Pod"), "xPOwRZ+Yhw8=");
        assert_eq!(
            storage_version_hash("apps", "v1", "Deployment"),
            "8aSe+NMegvE="
        );
    }

    #[test]
    fn scale_subresource_is_autoscaling_v1_scale() {
        let list = resource_list("apps", "v1").unwrap();
        let scale = entry(&list, "deployments/scale");
        assert_eq!(
            (&scale["group"], &scale["version"], &scale["kind"]),
            (&json!("autoscaling"), &json!("v1"), &json!("Scale"))
        );
        assert_eq!(scale["verbs"], json!(["get", "patch", "update"]));
        let status = entry(&list, "deployments/status");
        assert_eq!(status["kind"], "Deployment");
        assert!(status.get("group").is_none());
    }

    #[test]
    fn core_resources_sorted_with_kube_fields() {
        let list = resource_list("", "v1").unwrap();
        assert_eq!(list["groupVersion"], "v1");
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        let pods = entry(&list, "pods");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["storageVersionHash"], "xPOwRZ+Yhw8=");
        assert_eq!(entry(&list, "pods/binding")["kind"], "Binding");
        assert_eq!(entry(&list, "pods/log")["verbs"], json!(["get"]));
        // Empty lists are omitted, as kube-apiserver does.
        assert!(entry(&list, "secrets").get("shortNames").is_none());
    }

    #[test]
    fn api_versions_advertise_the_address_the_client_used() {
        let doc = api_versions_document("127.0.0.1:6443");
        assert_eq!(
            doc["serverAddressByClientCIDRs"],
            json!([{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}])
        );
        assert_eq!(
            api_versions_document("")["serverAddressByClientCIDRs"],
            json!([])
        );
    }
}
