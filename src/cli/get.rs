//! `herd get`: one object or a list, as a table, YAML, JSON or names.

use anyhow::anyhow;
use herd_api::resources::{self, ResourceInfo};
use kube::Client;
use kube::api::{DynamicObject, ListParams};
use serde::Serialize as _;
use serde_json::{Value, json};

use super::errors::from_kube;
use super::manifest::type_name;
use super::table::{self, TableOptions};

/// The `-o` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table { wide: bool },
    Yaml,
    Json,
    Name,
}

impl Output {
    /// Reads `-o`; `None` is the plain table.
    pub fn parse(output: Option<&str>) -> anyhow::Result<Self> {
        match output {
            None => Ok(Output::Table { wide: false }),
            Some("wide") => Ok(Output::Table { wide: true }),
            Some("yaml") => Ok(Output::Yaml),
            Some("json") => Ok(Output::Json),
            Some("name") => Ok(Output::Name),
            Some(other) => Err(anyhow!(
                "unable to match a printer suitable for the output format \"{other}\", \
                 allowed formats are: json,name,wide,yaml"
            )),
        }
    }
}

/// What to get.
#[derive(Debug, Clone)]
pub struct GetRequest {
    /// `pods`, `po`, `deployments.apps`, … or `pod/hello`.
    pub resource: String,
    pub name: Option<String>,
    pub namespace: String,
    pub all_namespaces: bool,
    pub selector: Option<String>,
    pub output: Output,
}

/// Looks up a resource type as kubectl does, with kubectl's error for an unknown one.
pub fn resource_type(name: &str) -> anyhow::Result<&'static ResourceInfo> {
    resources::by_name(name)
        .ok_or_else(|| anyhow!("the server doesn't have a resource type \"{name}\""))
}

/// Splits `pod/hello` into its type and name.
pub fn split_type_and_name(
    resource: &str,
    name: Option<&str>,
) -> anyhow::Result<(&'static ResourceInfo, Option<String>)> {
    match resource.split_once('/') {
        Some((kind, object)) if name.is_none() && !object.is_empty() => {
            Ok((resource_type(kind)?, Some(object.to_string())))
        }
        Some(_) => Err(anyhow!(
            "there is no need to specify a resource type as a separate argument when passing \
             arguments in resource/name form"
        )),
        None => Ok((resource_type(resource)?, name.map(str::to_string))),
    }
}

/// Runs `herd get` and prints the result.
pub async fn get(client: &Client, request: GetRequest) -> anyhow::Result<()> {
    let (info, name) = split_type_and_name(&request.resource, request.name.as_deref())?;
    let now = jiff::Timestamp::now();
    if let Some(name) = name {
        let namespace = info.namespaced.then_some(request.namespace.as_str());
        let object = super::api(client, info, namespace)
            .get(&name)
            .await
            .map_err(from_kube)?;
        let object = to_json(object, info)?;
        let text = match request.output {
            Output::Table { wide } => {
                let options = TableOptions {
                    wide,
                    with_namespace: false,
                };
                table::render(&table::build(info.plural, &[object], options, now))
            }
            Output::Yaml => serde_yaml::to_string(&object)?,
            Output::Json => pretty_json(&object)?,
            Output::Name => format!("{}/{name}\n", type_name(info)),
        };
        print!("{text}");
        return Ok(());
    }

    let all = request.all_namespaces || !info.namespaced;
    let namespace = (!all).then_some(request.namespace.as_str());
    let mut params = ListParams::default();
    if let Some(selector) = &request.selector {
        params = params.labels(selector);
    }
    let list = super::api(client, info, namespace)
        .list(&params)
        .await
        .map_err(from_kube)?;
    let mut objects = list
        .items
        .into_iter()
        .map(|o| to_json(o, info))
        .collect::<anyhow::Result<Vec<_>>>()?;
    objects.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));

    let text = match request.output {
        Output::Yaml => serde_yaml::to_string(&as_list(objects))?,
        Output::Json => pretty_json(&as_list(objects))?,
        _ if objects.is_empty() => {
            match namespace {
                Some(ns) => eprintln!("No resources found in {ns} namespace."),
                None => eprintln!("No resources found"),
            }
            return Ok(());
        }
        Output::Name => objects
            .iter()
            .map(|o| format!("{}/{}\n", type_name(info), name_of(o)))
            .collect(),
        Output::Table { wide } => {
            let options = TableOptions {
                wide,
                with_namespace: request.all_namespaces && info.namespaced,
            };
            table::render(&table::build(info.plural, &objects, options, now))
        }
    };
    print!("{text}");
    Ok(())
}

/// The object as JSON with `apiVersion` and `kind` filled in (list items often lack them).
fn to_json(object: DynamicObject, info: &ResourceInfo) -> anyhow::Result<Value> {
    let mut value = serde_json::to_value(object)?;
    if let Some(fields) = value.as_object_mut() {
        fields
            .entry("apiVersion")
            .or_insert_with(|| Value::String(info.api_version()));
        fields
            .entry("kind")
            .or_insert_with(|| Value::String(info.kind.to_string()));
    }
    Ok(value)
}

fn as_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
}

fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn sort_key(object: &Value) -> (&str, &str) {
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    (namespace, name_of(object))
}

/// JSON indented by four spaces, as kubectl prints it.
fn pretty_json(value: &Value) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer)?;
    out.push(b'\n');
    Ok(String::from_utf8(out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_formats() {
        assert_eq!(
            Output::parse(None).ok(),
            Some(Output::Table { wide: false })
        );
        assert_eq!(
            Output::parse(Some("wide")).ok(),
            Some(Output::Table { wide: true })
        );
        assert_eq!(Output::parse(Some("yaml")).ok(), Some(Output::Yaml));
        assert!(Output::parse(Some("jsonpath")).is_err());
    }

    #[test]
    fn resource_and_name_forms() {
        let (info, name) = split_type_and_name("po/hello", None).expect("valid");
        assert_eq!((info.plural, name.as_deref()), ("pods", Some("hello")));
        let (info, name) = split_type_and_name("deploy", Some("web")).expect("valid");
        assert_eq!((info.plural, name.as_deref()), ("deployments", Some("web")));
        assert!(split_type_and_name("pod/hello", Some("other")).is_err());
        let err = split_type_and_name("widgets", None).expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "the server doesn't have a resource type \"widgets\""
        );
    }

    #[test]
    fn list_items_get_their_type_and_json_is_indented_by_four() {
        let info = resources::by_name("pods").expect("pods");
        let object: DynamicObject =
            serde_json::from_value(json!({"metadata": {"name": "a"}})).expect("object");
        let value = to_json(object, info).expect("json");
        assert_eq!(value["apiVersion"], "v1");
        assert_eq!(value["kind"], "Pod");
        let text = pretty_json(&json!({"a": 1})).expect("json");
        assert_eq!(text, "{\n    \"a\": 1\n}\n");
    }
}
