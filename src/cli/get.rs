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

/// The types `get` without `/` accepts: `pods`, `pods,services`, or kubectl's `all` (pods,
/// services, deployments, replicasets).
pub fn resource_types(resource: &str) -> anyhow::Result<Vec<&'static ResourceInfo>> {
    let names: Vec<&str> = if resource == "all" {
        vec!["pods", "services", "deployments", "replicasets"]
    } else {
        resource.split(',').filter(|n| !n.is_empty()).collect()
    };
    if names.is_empty() {
        return Err(anyhow!("no resource type given"));
    }
    names.into_iter().map(resource_type).collect()
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
    if request.resource.contains('/') || request.name.is_some() {
        let (info, name) = split_type_and_name(&request.resource, request.name.as_deref())?;
        if let Some(name) = name {
            return get_one(client, info, &name, &request).await;
        }
    }
    let types = resource_types(&request.resource)?;
    let mut params = ListParams::default();
    if let Some(selector) = &request.selector {
        params = params.labels(selector);
    }
    let mut lists = Vec::new();
    for info in &types {
        let namespace =
            (info.namespaced && !request.all_namespaces).then_some(request.namespace.as_str());
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
        lists.push((*info, objects));
    }

    let everything = || {
        lists
            .iter()
            .flat_map(|(_, objects)| objects.iter().cloned())
    };
    let text = match request.output {
        Output::Yaml => serde_yaml::to_string(&as_list(everything().collect()))?,
        Output::Json => pretty_json(&as_list(everything().collect()))?,
        _ if lists.iter().all(|(_, objects)| objects.is_empty()) => {
            if types.iter().any(|t| t.namespaced) && !request.all_namespaces {
                eprintln!("No resources found in {} namespace.", request.namespace);
            } else {
                eprintln!("No resources found");
            }
            return Ok(());
        }
        Output::Name => lists
            .iter()
            .flat_map(|(info, objects)| {
                objects
                    .iter()
                    .map(|o| format!("{}/{}\n", type_name(info), name_of(o)))
            })
            .collect(),
        Output::Table { wide } => {
            let sections: Vec<String> = lists
                .iter()
                .filter(|(_, objects)| !objects.is_empty())
                .map(|(info, objects)| {
                    let options = TableOptions {
                        wide,
                        with_namespace: request.all_namespaces && info.namespaced,
                    };
                    let mut built =
                        table::build(info.plural, objects, options, jiff::Timestamp::now());
                    if types.len() > 1 {
                        qualify_names(&mut built, info, options);
                    }
                    table::render(&built)
                })
                .collect();
            sections.join("\n")
        }
    };
    print!("{text}");
    Ok(())
}

async fn get_one(
    client: &Client,
    info: &'static ResourceInfo,
    name: &str,
    request: &GetRequest,
) -> anyhow::Result<()> {
    let namespace = info.namespaced.then_some(request.namespace.as_str());
    let object = super::api(client, info, namespace)
        .get(name)
        .await
        .map_err(from_kube)?;
    let object = to_json(object, info)?;
    let text = match request.output {
        Output::Table { wide } => {
            let options = TableOptions {
                wide,
                with_namespace: false,
            };
            let now = jiff::Timestamp::now();
            table::render(&table::build(info.plural, &[object], options, now))
        }
        Output::Yaml => serde_yaml::to_string(&object)?,
        Output::Json => pretty_json(&object)?,
        Output::Name => format!("{}/{name}\n", type_name(info)),
    };
    print!("{text}");
    Ok(())
}

/// With several types in one `get`, kubectl writes NAME as `pod/hello`.
fn qualify_names(built: &mut table::Table, info: &ResourceInfo, options: TableOptions) {
    let column = usize::from(options.with_namespace);
    let prefix = type_name(info);
    for row in &mut built.rows {
        if let Some(cell) = row.get_mut(column) {
            *cell = format!("{prefix}/{cell}");
        }
    }
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
    fn several_types_and_all() {
        let plurals = |arg| -> Vec<&str> {
            resource_types(arg)
                .expect("valid")
                .iter()
                .map(|t| t.plural)
                .collect()
        };
        assert_eq!(plurals("po,svc"), ["pods", "services"]);
        assert_eq!(
            plurals("all"),
            ["pods", "services", "deployments", "replicasets"]
        );
        assert!(resource_types("pods,widgets").is_err());
        assert!(resource_types(",").is_err());
    }

    #[test]
    fn several_types_qualify_the_name_column() {
        let info = resources::by_name("svc").expect("services");
        let options = TableOptions {
            wide: false,
            with_namespace: true,
        };
        let object = json!({"metadata": {"name": "web", "namespace": "default"}});
        let mut built = table::build(info.plural, &[object], options, jiff::Timestamp::now());
        qualify_names(&mut built, info, options);
        assert_eq!(built.rows[0][..2], ["default", "service/web"]);
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
