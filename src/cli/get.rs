//! `herd get`: one object or a list, as a table, YAML, JSON or names.

use anyhow::anyhow;
use herd_api::resources::{self, ResourceInfo};
use kube::Client;
use kube::api::{DynamicObject, GetParams, ListParams};
use serde::Serialize as _;
use serde_json::{Value, json};

use super::errors::from_kube;
use super::manifest::type_name;

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
    let text = match request.output {
        Output::Table { wide } => tables(client, &types, &request, wide).await?,
        output => objects(client, &types, &request, output).await?,
    };
    let Some(text) = text else {
        if types.iter().any(|t| t.namespaced) && !request.all_namespaces {
            eprintln!("No resources found in {} namespace.", request.namespace);
        } else {
            eprintln!("No resources found");
        }
        return Ok(());
    };
    print!("{text}");
    Ok(())
}

/// The lists as the server's Tables, one section per type with rows (kubectl leaves a blank line
/// between sections); `None` when every list is empty.
async fn tables(
    client: &Client,
    types: &[&'static ResourceInfo],
    request: &GetRequest,
    wide: bool,
) -> anyhow::Result<Option<String>> {
    let mut params = ListParams::default();
    if let Some(selector) = &request.selector {
        params = params.labels(selector);
    }
    let mut sections = Vec::new();
    for info in types {
        let namespace =
            (info.namespaced && !request.all_namespaces).then_some(request.namespace.as_str());
        let http = kube::core::Request::new(url_path(info, namespace))
            .list(&params)
            .map_err(|e| anyhow!("cannot build the list request: {e}"))?;
        let table = fetch_table(client, http).await?;
        let options = PrintOptions {
            wide,
            with_namespace: request.all_namespaces && info.namespaced,
            kind: (types.len() > 1).then(|| type_name(info)),
        };
        if let Some(section) = print_table(&table, &options) {
            sections.push(section);
        }
    }
    Ok((!sections.is_empty()).then(|| sections.join("\n")))
}

/// The lists as objects: one `List` in YAML or JSON, or `TYPE/NAME` lines; `None` when every list
/// is empty and the output is names.
async fn objects(
    client: &Client,
    types: &[&'static ResourceInfo],
    request: &GetRequest,
    output: Output,
) -> anyhow::Result<Option<String>> {
    let mut params = ListParams::default();
    if let Some(selector) = &request.selector {
        params = params.labels(selector);
    }
    let mut lists = Vec::new();
    for info in types {
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
    Ok(match output {
        Output::Yaml => Some(serde_yaml::to_string(&as_list(everything().collect()))?),
        Output::Json => Some(pretty_json(&as_list(everything().collect()))?),
        _ if lists.iter().all(|(_, objects)| objects.is_empty()) => None,
        _ => Some(
            lists
                .iter()
                .flat_map(|(info, objects)| {
                    objects
                        .iter()
                        .map(|o| format!("{}/{}\n", type_name(info), name_of(o)))
                })
                .collect(),
        ),
    })
}

async fn get_one(
    client: &Client,
    info: &'static ResourceInfo,
    name: &str,
    request: &GetRequest,
) -> anyhow::Result<()> {
    let namespace = info.namespaced.then_some(request.namespace.as_str());
    if let Output::Table { wide } = request.output {
        let http = kube::core::Request::new(url_path(info, namespace))
            .get(name, &GetParams::default())
            .map_err(|e| anyhow!("cannot build the get request: {e}"))?;
        let table = fetch_table(client, http).await?;
        let options = PrintOptions {
            wide,
            with_namespace: false,
            kind: None,
        };
        print!("{}", print_table(&table, &options).unwrap_or_default());
        return Ok(());
    }
    let object = super::api(client, info, namespace)
        .get(name)
        .await
        .map_err(from_kube)?;
    let object = to_json(object, info)?;
    let text = match request.output {
        Output::Yaml => serde_yaml::to_string(&object)?,
        Output::Json => pretty_json(&object)?,
        Output::Name | Output::Table { .. } => format!("{}/{name}\n", type_name(info)),
    };
    print!("{text}");
    Ok(())
}

/// What kubectl sends to have a list or object answered as a `meta.k8s.io` Table.
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// Sends `http` asking for the server's Table.
async fn fetch_table(client: &Client, mut http: hyper::Request<Vec<u8>>) -> anyhow::Result<Value> {
    http.headers_mut().insert(
        hyper::header::ACCEPT,
        hyper::header::HeaderValue::from_static(TABLE_ACCEPT),
    );
    let table: Value = client.request(http).await.map_err(from_kube)?;
    if table.get("kind").and_then(Value::as_str) != Some("Table") {
        return Err(anyhow!("the server did not answer a Table"));
    }
    Ok(table)
}

/// The collection's path (`/apis/apps/v1/namespaces/default/deployments`), across all namespaces
/// with `None`.
fn url_path(info: &ResourceInfo, namespace: Option<&str>) -> String {
    let namespace = namespace.filter(|_| info.namespaced);
    <DynamicObject as kube::Resource>::url_path(&super::api_resource(info), namespace)
}

/// How kubectl's printer lays a server Table out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PrintOptions {
    /// `-o wide`: every column, not only those of priority 0.
    wide: bool,
    /// `-A`: a NAMESPACE column first, from each row's object.
    with_namespace: bool,
    /// Several types in one `get`: the name column as `pod/hello`.
    kind: Option<String>,
}

/// Prints a `meta.k8s.io` Table as kubectl does (`printers.PrintTable` with `decorateTable`):
/// upper-cased headers, priority-0 columns unless wide, then a tabwriter. `None` without rows.
fn print_table(table: &Value, options: &PrintOptions) -> Option<String> {
    let rows = table
        .get("rows")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())?;
    let columns: Vec<&Value> = table
        .get("columnDefinitions")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let shown: Vec<usize> = (0..columns.len())
        .filter(|&i| {
            options.wide
                || columns[i]
                    .get("priority")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    == 0
        })
        .collect();
    let name_column = options.kind.as_ref().and_then(|_| {
        columns.iter().position(|c| {
            c.get("format").and_then(Value::as_str) == Some("name")
                && c.get("type").and_then(Value::as_str) == Some("string")
        })
    });
    let mut lines = Vec::with_capacity(rows.len() + 1);
    let mut header = Vec::new();
    if options.with_namespace {
        header.push("NAMESPACE".to_string());
    }
    header.extend(shown.iter().map(|&i| {
        columns[i]
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_uppercase()
    }));
    lines.push(header);
    for row in rows {
        let cells: &[Value] = row
            .get("cells")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let mut line = Vec::new();
        if options.with_namespace {
            let namespace = row
                .pointer("/object/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            line.push(namespace.to_string());
        }
        for &i in &shown {
            let Some(cell) = cells.get(i) else { break };
            let mut text = cell_text(cell);
            if Some(i) == name_column
                && let Some(kind) = &options.kind
            {
                text = format!("{kind}/{text}");
            }
            line.push(text);
        }
        lines.push(line);
    }
    Some(tabwrite(&lines))
}

/// A cell as kubectl prints it: a string up to its first line break (then `...`), anything else
/// as Go's `fmt.Sprint` shows the decoded JSON value.
fn cell_text(cell: &Value) -> String {
    match cell {
        Value::String(s) => match s.find(['\n', '\r', '\u{c}']) {
            Some(end) => format!("{}...", &s[..end]),
            None => s.clone(),
        },
        Value::Null => "<nil>".to_string(),
        other => other.to_string(),
    }
}

/// kubectl's tabwriter (minimum width 6, padding 3): every cell but a line's last padded to its
/// column's widest cell plus three spaces.
fn tabwrite(lines: &[Vec<String>]) -> String {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for line in lines {
        for (i, cell) in line.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in lines {
        for (i, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < line.len() {
                let width = (widths[i] + 3).max(6);
                out.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
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

    fn server_table() -> Value {
        json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "priority": 0},
                {"name": "Status", "type": "string", "format": "", "priority": 0},
                {"name": "Restarts", "type": "string", "format": "", "priority": 0},
                {"name": "Node", "type": "string", "format": "", "priority": 1},
            ],
            "rows": [
                {"cells": ["hello", "Init:0/1", "0", "e2e-node"],
                 "object": {"metadata": {"name": "hello", "namespace": "default"}}},
                {"cells": ["a-longer-name", "Running", "1 (5s ago)", "<none>"],
                 "object": {"metadata": {"name": "a-longer-name", "namespace": "team-a"}}},
            ],
        })
    }

    #[test]
    fn server_tables_print_as_kubectl_prints_them() {
        let text = print_table(&server_table(), &PrintOptions::default()).expect("rows");
        assert_eq!(
            text,
            "NAME            STATUS     RESTARTS\n\
             hello           Init:0/1   0\n\
             a-longer-name   Running    1 (5s ago)\n"
        );
        let wide = PrintOptions {
            wide: true,
            with_namespace: true,
            kind: Some("pod".to_string()),
        };
        let text = print_table(&server_table(), &wide).expect("rows");
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "NAMESPACE   NAME                STATUS     RESTARTS     NODE",
                "default     pod/hello           Init:0/1   0            e2e-node",
                "team-a      pod/a-longer-name   Running    1 (5s ago)   <none>",
            ]
        );
        let mut empty = server_table();
        empty["rows"] = json!([]);
        assert_eq!(print_table(&empty, &PrintOptions::default()), None);
    }

    #[test]
    fn cells_print_as_go_prints_them() {
        assert_eq!(cell_text(&json!(3)), "3");
        assert_eq!(cell_text(&json!(true)), "true");
        assert_eq!(cell_text(&Value::Null), "<nil>");
        assert_eq!(cell_text(&json!("two\nlines")), "two...");
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
