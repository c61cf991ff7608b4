//! `paths` of a group-version document: one path item per URL herd serves, one operation per verb served
//! there (from [`discovery::verbs`] and [`discovery::subresource`]), shaped as kube-apiserver's: an
//! `operationId`, the query `parameters`, the request body, the responses and the
//! `x-kubernetes-action`/`x-kubernetes-group-version-kind` extensions.
//!
//! kubectl relies on two things here: a PATCH operation of a kind that lists the `fieldValidation` query
//! parameter makes it validate on the server (`fieldValidation=Strict`) instead of downloading OpenAPI v2,
//! and a PATCH body accepting `application/strategic-merge-patch+json` makes `kubectl apply` compute a
//! strategic merge patch from the schemas.

use herd_api::ResourceInfo;
use herd_api::resources::RESOURCES;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde_json::{Map, Value, json};

use super::parameters::{
    delete_params, list_params, log_params, path_param, query_param, write_params,
};
use super::schemas::{Components, Gvk, reference};
use crate::server::discovery;

/// The patch formats herd decodes (see `decode_patch` in the server).
pub const PATCH_CONTENT_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// Builds the OpenAPI document of `group`/`version`: `paths` and `components`.
pub fn document(group: &str, version: &str) -> Value {
    let mut components = Components::new();
    let status = components.meta::<meta::Status>(&[("", "v1", "Status")]);
    let delete_options = components.meta::<meta::DeleteOptions>(&[
        (group, version, "DeleteOptions"),
        ("", "v1", "DeleteOptions"),
    ]);
    let patch = components.meta::<meta::Patch>(&[]);
    let resource_list = components.meta::<meta::APIResourceList>(&[]);
    let doc = Doc {
        prefix: if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        },
        status,
        delete_options,
        patch,
        tag: tag(group, version),
        op_prefix: format!("{}{}", group_camel(group), upper_first(version)),
    };
    let mut paths = Map::new();
    let discovery_op = json!({
        "description": "get available resources",
        "operationId": format!("get{}APIResources", doc.op_prefix),
        "responses": responses(&[("200", "OK")], &resource_list, JSON),
        "tags": [doc.tag],
    });
    paths.insert(format!("{}/", doc.prefix), json!({"get": discovery_op}));
    for res in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resource_paths(&mut paths, &mut components, &doc, res);
    }
    let (major, minor) = discovery::KUBERNETES_VERSION;
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v{major}.{minor}.0")},
        "paths": paths,
        "components": {
            "schemas": components.finish(),
            "securitySchemes": {"BearerToken": {
                "type": "apiKey", "name": "authorization", "in": "header",
                "description": "Bearer Token authentication",
            }},
        },
    })
}

/// What the operations of one document share.
struct Doc {
    /// `/api/v1`, `/apis/apps/v1`.
    prefix: String,
    status: String,
    delete_options: String,
    patch: String,
    tag: String,
    /// `CoreV1`, `AppsV1`, `CoordinationV1`: the middle of every operationId.
    op_prefix: String,
}

const JSON: &[&str] = &["application/json"];
const JSON_OR_WATCH: &[&str] = &["application/json", "application/json;stream=watch"];

/// The kinds of operation kube-apiserver publishes, by the verb in their operationId.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    List,
    Create,
    DeleteCollection,
    Read,
    Replace,
    Patch,
    Delete,
}

impl Verb {
    /// (HTTP method, operationId verb, `x-kubernetes-action`).
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Verb::List => ("get", "list", "list"),
            Verb::Create => ("post", "create", "post"),
            Verb::DeleteCollection => ("delete", "deletecollection", "deletecollection"),
            Verb::Read => ("get", "read", "get"),
            Verb::Replace => ("put", "replace", "put"),
            Verb::Patch => ("patch", "patch", "patch"),
            Verb::Delete => ("delete", "delete", "delete"),
        }
    }
}

/// One operation on a kind (`gvk`, whose body schema is `schema`), or on its subresource `sub`.
struct Target<'a> {
    gvk: Gvk<'a>,
    schema: &'a str,
    list_schema: &'a str,
    /// `NamespacedPod`, `Node`: the end of the operationId.
    subject: String,
    /// The kind of the parent object, for descriptions.
    parent_kind: &'a str,
    sub: &'a str,
}

fn operation(doc: &Doc, verb: Verb, t: &Target<'_>) -> (&'static str, Value) {
    let (method, id_verb, action) = verb.names();
    let (group, version, kind) = t.gvk;
    let parent = t.parent_kind;
    let of = |what: &str| {
        if t.sub.is_empty() {
            format!("{what} the specified {parent}")
        } else {
            format!("{what} {} of the specified {parent}", t.sub)
        }
    };
    let (description, params, body, responses) = match verb {
        Verb::List => (
            format!("list or watch objects of kind {kind}"),
            list_params(),
            None,
            responses(&[("200", "OK")], t.list_schema, JSON_OR_WATCH),
        ),
        Verb::Create => (
            if t.sub.is_empty() {
                format!("create {}", article(kind))
            } else {
                format!("create {} of {}", t.sub, article(parent))
            },
            write_params(false),
            Some(body(t.schema, &["*/*"])),
            responses(&CREATED_CODES, t.schema, JSON),
        ),
        Verb::DeleteCollection => (
            format!("delete collection of {kind}"),
            [delete_params(), list_params()].concat(),
            Some(body(&doc.delete_options, &["*/*"])),
            responses(&[("200", "OK")], &doc.status, JSON),
        ),
        Verb::Read => (
            of("read"),
            Vec::new(),
            None,
            responses(&[("200", "OK")], t.schema, JSON),
        ),
        Verb::Replace => (
            of("replace"),
            write_params(false),
            Some(body(t.schema, &["*/*"])),
            responses(&UPDATED_CODES, t.schema, JSON),
        ),
        Verb::Patch => {
            let types: Vec<&str> = PATCH_CONTENT_TYPES
                .iter()
                .copied()
                // Without a complete schema a client cannot compute a strategic merge patch from it.
                .filter(|c| Components::is_typed(t.gvk) || !c.contains("strategic"))
                .collect();
            (
                of("partially update"),
                write_params(true),
                Some(body(&doc.patch, &types)),
                responses(&UPDATED_CODES, t.schema, JSON),
            )
        }
        Verb::Delete => (
            format!("delete {}", article(kind)),
            delete_params(),
            Some(body(&doc.delete_options, &["*/*"])),
            responses(&[("200", "OK"), ("202", "Accepted")], t.schema, JSON),
        ),
    };
    let sub_suffix = upper_first(t.sub);
    let mut op = json!({
        "description": description,
        "operationId": format!("{id_verb}{}{}{sub_suffix}", doc.op_prefix, t.subject),
        "responses": responses,
        "tags": [doc.tag],
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": group, "kind": kind, "version": version},
    });
    if !params.is_empty() {
        op["parameters"] = json!(params);
    }
    if let Some(body) = body {
        op["requestBody"] = body;
    }
    (method, op)
}

const CREATED_CODES: [(&str, &str); 3] = [("200", "OK"), ("201", "Created"), ("202", "Accepted")];
const UPDATED_CODES: [(&str, &str); 2] = [("200", "OK"), ("201", "Created")];

/// Which operation each discovery verb is, on a collection, an object and a subresource.
const COLLECTION_VERBS: &[(&str, Verb)] = &[
    ("list", Verb::List),
    ("create", Verb::Create),
    ("deletecollection", Verb::DeleteCollection),
];
const OBJECT_VERBS: &[(&str, Verb)] = &[
    ("get", Verb::Read),
    ("update", Verb::Replace),
    ("patch", Verb::Patch),
    ("delete", Verb::Delete),
];
const SUBRESOURCE_VERBS: &[(&str, Verb)] = &[
    ("get", Verb::Read),
    ("update", Verb::Replace),
    ("patch", Verb::Patch),
    ("create", Verb::Create),
];

/// The operations of the `served` verbs among `table`.
fn operations(
    doc: &Doc,
    served: &[&str],
    table: &[(&str, Verb)],
    t: &Target<'_>,
) -> Vec<(&'static str, Value)> {
    table
        .iter()
        .filter(|(verb, _)| served.contains(verb))
        .map(|(_, op)| operation(doc, *op, t))
        .collect()
}

fn resource_paths(
    paths: &mut Map<String, Value>,
    components: &mut Components,
    doc: &Doc,
    res: &ResourceInfo,
) {
    let gvk = (res.group, res.version, res.kind);
    let schema = components.kind(gvk);
    let list_schema = components.list(gvk, &schema);
    let verbs = discovery::verbs(res);
    let scope = if res.namespaced { "Namespaced" } else { "" };
    let target = Target {
        gvk,
        schema: &schema,
        list_schema: &list_schema,
        subject: format!("{scope}{}", res.kind),
        parent_kind: res.kind,
        sub: "",
    };
    let (collection, scope_params) = if res.namespaced {
        let ns = path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        );
        (
            format!("{}/namespaces/{{namespace}}/{}", doc.prefix, res.plural),
            vec![ns],
        )
    } else {
        (format!("{}/{}", doc.prefix, res.plural), Vec::new())
    };

    let ops = operations(doc, verbs, COLLECTION_VERBS, &target);
    insert_path(paths, &collection, &scope_params, ops);

    if res.namespaced && verbs.contains(&"list") {
        let all = Target {
            subject: format!("{}ForAllNamespaces", res.kind),
            ..target
        };
        let list = operation(doc, Verb::List, &all);
        insert_path(
            paths,
            &format!("{}/{}", doc.prefix, res.plural),
            &[],
            vec![list],
        );
    }

    let object = format!("{collection}/{{name}}");
    let object_params = [
        vec![path_param("name", &format!("name of the {}", res.kind))],
        scope_params,
    ]
    .concat();
    let ops = operations(doc, verbs, OBJECT_VERBS, &target);
    insert_path(paths, &object, &object_params, ops);

    for sub in res.subresources {
        let info = discovery::subresource(res, sub);
        let (group, version) = info.group_version.unwrap_or((res.group, res.version));
        let sub_gvk = (group, version, info.kind);
        let path = format!("{object}/{sub}");
        if *sub == "log" {
            insert_path(
                paths,
                &path,
                &object_params,
                vec![log_operation(doc, &target)],
            );
            continue;
        }
        let sub_schema = components.kind(sub_gvk);
        let sub_target = Target {
            gvk: sub_gvk,
            schema: &sub_schema,
            list_schema: &sub_schema,
            subject: target.subject.clone(),
            parent_kind: res.kind,
            sub,
        };
        let ops = operations(doc, info.verbs, SUBRESOURCE_VERBS, &sub_target);
        insert_path(paths, &path, &object_params, ops);
    }
}

/// `GET …/pods/{name}/log`: plain text.
fn log_operation(doc: &Doc, t: &Target<'_>) -> (&'static str, Value) {
    let (group, version, kind) = t.gvk;
    let text = json!({"text/plain": {"schema": {"type": "string"}}});
    (
        "get",
        json!({
            "description": format!("read log of the specified {kind}"),
            "operationId": format!("read{}{}Log", doc.op_prefix, t.subject),
            "parameters": log_params(),
            "responses": {"200": {"description": "OK", "content": text}, "401": {"description": "Unauthorized"}},
            "tags": [doc.tag],
            "x-kubernetes-action": "get",
            "x-kubernetes-group-version-kind": {"group": group, "kind": kind, "version": version},
        }),
    )
}

fn insert_path(
    paths: &mut Map<String, Value>,
    path: &str,
    params: &[Value],
    ops: Vec<(&str, Value)>,
) {
    if ops.is_empty() {
        return;
    }
    let mut item: Map<String, Value> = ops.into_iter().map(|(m, op)| (m.to_string(), op)).collect();
    let mut params = params.to_vec();
    params.push(query_param(
        "pretty",
        "string",
        "If 'true', then the output is pretty printed.",
    ));
    item.insert("parameters".into(), json!(params));
    paths.insert(path.into(), Value::Object(item));
}

/// `{content type: {schema: $ref}}` for each content type.
fn content(schema: &str, types: &[&str]) -> Map<String, Value> {
    types
        .iter()
        .map(|t| {
            (
                t.to_string(),
                json!({"schema": {"$ref": reference(schema)}}),
            )
        })
        .collect()
}

fn body(schema: &str, types: &[&str]) -> Value {
    json!({"content": content(schema, types), "required": true})
}

fn responses(codes: &[(&str, &str)], schema: &str, types: &[&str]) -> Value {
    let mut out: Map<String, Value> = codes
        .iter()
        .map(|(code, text)| {
            (
                code.to_string(),
                json!({"description": text, "content": content(schema, types)}),
            )
        })
        .collect();
    out.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(out)
}

/// `Core` for the core group; otherwise the group without `.k8s.io`, camel-cased: `Coordination`,
/// `RbacAuthorization`.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    let short = group.strip_suffix(".k8s.io").unwrap_or(group);
    short.split('.').map(upper_first).collect()
}

/// `core_v1`, `apps_v1`, `coordination_v1`: the tag of every operation of a document.
fn tag(group: &str, version: &str) -> String {
    let camel = group_camel(group);
    let mut chars = camel.chars();
    let first = chars.next().map(|c| c.to_ascii_lowercase());
    format!(
        "{}{}_{version}",
        first.map(String::from).unwrap_or_default(),
        chars.as_str()
    )
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase());
    format!(
        "{}{}",
        first.map(String::from).unwrap_or_default(),
        chars.as_str()
    )
}

/// `a Pod`, `an Endpoints`.
fn article(kind: &str) -> String {
    let an = kind.starts_with(['A', 'E', 'I', 'O', 'U']);
    format!("{} {kind}", if an { "an" } else { "a" })
}
