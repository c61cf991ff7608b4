//! Manifests: reading YAML/JSON files of objects and resolving each object's resource type.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use herd_api::resources::{self, ResourceInfo};
use serde::Deserialize as _;
use serde_json::Value;

/// One object of a manifest, with where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub info: &'static ResourceInfo,
    pub name: String,
    /// Set for namespaced resources only.
    pub namespace: Option<String>,
    /// The object as written, with `metadata.namespace` filled in for namespaced resources.
    pub object: Value,
}

/// Reads the objects of `path`: a file, every `.yaml`/`.yml`/`.json` file of a directory (sorted
/// by name), or standard input for `-`.
pub fn read_objects(path: &Path) -> anyhow::Result<Vec<Value>> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        return parse_objects(&text).context("cannot parse standard input");
    }
    let files = if path.is_dir() {
        manifest_files(path)?
    } else {
        vec![path.to_path_buf()]
    };
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
        let parsed =
            parse_objects(&text).with_context(|| format!("cannot parse {}", file.display()))?;
        objects.extend(parsed);
    }
    Ok(objects)
}

fn manifest_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| anyhow!("cannot read {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| anyhow!("cannot read {}: {e}", dir.display()))?
            .path();
        let is_manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if is_manifest && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Parses YAML (or JSON) documents separated by `---`; empty documents are skipped and the items
/// of a `kind: List` are taken one by one.
pub fn parse_objects(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value =
            Value::deserialize(document).map_err(|e| anyhow!("document {}: {e}", index + 1))?;
        match value {
            Value::Null => {}
            Value::Object(_) if is_list(&value) => {
                if let Some(Value::Array(items)) = value.get("items") {
                    objects.extend(items.iter().filter(|i| !i.is_null()).cloned());
                }
            }
            Value::Object(_) => objects.push(value),
            _ => bail!("document {} is not an object", index + 1),
        }
    }
    Ok(objects)
}

fn is_list(value: &Value) -> bool {
    value.get("kind").and_then(Value::as_str) == Some("List")
}

/// Finds the resource type of `object` by `apiVersion` and `kind` and where it lives: its own
/// `metadata.namespace`, else `default_namespace`.
pub fn resolve(mut object: Value, default_namespace: &str) -> anyhow::Result<Manifest> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version.is_empty() || kind.is_empty() {
        bail!("an object in the manifest has no apiVersion or kind");
    }
    let info = resources::by_kind(api_version, kind).ok_or_else(|| {
        anyhow!(
            "resource mapping not found for kind \"{kind}\" in version \"{api_version}\": \
             herd does not serve it"
        )
    })?;
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow!("a {kind} in the manifest has no metadata.name"))?
        .to_string();
    let namespace = if info.namespaced {
        let ns = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .unwrap_or(default_namespace)
            .to_string();
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("namespace".to_string(), Value::String(ns.clone()));
        }
        Some(ns)
    } else {
        None
    };
    Ok(Manifest {
        info,
        name,
        namespace,
        object,
    })
}

/// kubectl's name for a resource type in messages: `pod`, `deployment.apps`.
pub fn type_name(info: &ResourceInfo) -> String {
    let kind = info.kind.to_ascii_lowercase();
    if info.group.is_empty() {
        kind
    } else {
        format!("{kind}.{}", info.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_documents_skipping_empty_ones_and_opening_lists() {
        let text = "---\n\
            apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n\
            ---\n\
            # only a comment\n\
            ---\n\
            apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n\
            ---\n\
            {\"apiVersion\": \"apps/v1\", \"kind\": \"Deployment\", \"metadata\": {\"name\": \"c\"}}\n";
        let objects = parse_objects(text).expect("parses");
        let names: Vec<_> = objects
            .iter()
            .map(|o| o.pointer("/metadata/name").and_then(Value::as_str))
            .collect();
        assert_eq!(names, [Some("a"), Some("b"), Some("c")]);
    }

    #[test]
    fn rejects_documents_that_are_not_objects() {
        assert!(parse_objects("- 1\n- 2\n").is_err());
        assert!(parse_objects("a: [\n").is_err());
    }

    #[test]
    fn resolves_kind_and_namespace() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello"}});
        let m = resolve(pod, "team").expect("resolves");
        assert_eq!(m.info.plural, "pods");
        assert_eq!(m.namespace.as_deref(), Some("team"));
        assert_eq!(
            m.object.pointer("/metadata/namespace"),
            Some(&json!("team"))
        );

        let own = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": "web", "namespace": "prod"}});
        assert_eq!(
            resolve(own, "team").expect("resolves").namespace.as_deref(),
            Some("prod")
        );

        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}});
        assert_eq!(resolve(ns, "team").expect("resolves").namespace, None);
    }

    #[test]
    fn unknown_kinds_and_missing_names_are_errors() {
        let widget =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        let err = resolve(widget, "default").expect_err("unknown kind");
        assert!(err.to_string().contains("\"Widget\""), "{err}");

        let nameless = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}});
        assert!(resolve(nameless, "default").is_err());
        assert!(resolve(json!({"metadata": {"name": "x"}}), "default").is_err());
    }

    #[test]
    fn type_names_carry_the_group() {
        let deploy = resources::by_kind("apps/v1", "Deployment").expect("deployments");
        assert_eq!(type_name(deploy), "deployment.apps");
        let pod = resources::by_kind("v1", "Pod").expect("pods");
        assert_eq!(type_name(pod), "pod");
    }
}
