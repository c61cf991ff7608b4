//! Server-side printing: a request that accepts `application/json;as=Table;v=v1;g=meta.k8s.io` is answered
//! with a `meta.k8s.io` Table whose columns and cells are those of kube-apiserver's printers
//! (`pkg/printers/internalversion/printers.go`), so stock `kubectl get` prints what it prints against a real
//! cluster. kubectl only lays the cells out: it drops priority-1 columns unless `-o wide`, and takes names,
//! namespaces and labels from each row's `object`.
//!
//! As kube-apiserver does, every column is always present (its table convertor prints "wide"), a watch sends
//! `columnDefinitions` only with its first event, and `Status` objects (watch ERROR events) pass unconverted.

mod apps;
mod cells;
mod columns;
mod pod;
mod storage;

use herd_api::ResourceInfo;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use cells::Row;
use columns::{Column, Columns};

/// The `meta.k8s.io` version of the Table a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableVersion {
    V1,
    V1Beta1,
}

impl TableVersion {
    /// `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`: the Table's and each PartialObjectMetadata's apiVersion.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::V1 => "meta.k8s.io/v1",
            Self::V1Beta1 => "meta.k8s.io/v1beta1",
        }
    }
}

/// `?includeObject=`: what each row carries in `object`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    /// A `PartialObjectMetadata` (the default; kubectl reads names, namespaces and labels from it).
    #[default]
    Metadata,
    /// The whole object (kubectl asks for it with `--sort-by`).
    Object,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error(
        "Unable to convert to Table as requested: includeObject: Unsupported value: \"{0}\": supported values: \"Metadata\", \"None\", \"Object\""
    )]
    UnsupportedIncludeObject(String),
}

impl From<TableError> for ApiError {
    fn from(e: TableError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter (absent or empty means `Metadata`).
    pub fn from_param(value: Option<&str>) -> Result<Self, TableError> {
        match value.unwrap_or_default() {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(TableError::UnsupportedIncludeObject(other.to_string())),
        }
    }
}

/// Whether the request asked for a meta.k8s.io Table (v1 or v1beta1) and which version to answer.
///
/// Clauses are tried by `q` (then specificity) as kube-apiserver's negotiation does: the first JSON clause
/// without a conversion means a plain object, one with `as=Table;g=meta.k8s.io;v=v1|v1beta1` means a Table;
/// clauses for other media types (protobuf, YAML) or other conversions are skipped.
pub fn requested(accept: &str) -> Option<TableVersion> {
    let mut clauses: Vec<MediaClause> = accept.split(',').filter_map(MediaClause::parse).collect();
    clauses.sort_by(|a, b| {
        b.q.total_cmp(&a.q)
            .then_with(|| (a.kind == "*").cmp(&(b.kind == "*")))
            .then_with(|| (a.sub == "*").cmp(&(b.sub == "*")))
    });
    for c in clauses.iter().filter(|c| c.q > 0.0) {
        let json = matches!(
            (c.kind.as_str(), c.sub.as_str()),
            ("application", "json") | ("application", "*") | ("*", "*")
        );
        if !json {
            continue;
        }
        match (c.param("as"), c.param("g"), c.param("v")) {
            (None, _, _) => return None,
            (Some("Table"), Some("meta.k8s.io"), Some("v1")) => return Some(TableVersion::V1),
            (Some("Table"), Some("meta.k8s.io"), Some("v1beta1")) => {
                return Some(TableVersion::V1Beta1);
            }
            _ => {}
        }
    }
    None
}

struct MediaClause {
    kind: String,
    sub: String,
    q: f64,
    params: Vec<(String, String)>,
}

impl MediaClause {
    fn parse(clause: &str) -> Option<Self> {
        let mut parts = clause.split(';');
        let (kind, sub) = parts.next()?.trim().split_once('/')?;
        let mut out = Self {
            kind: kind.trim().to_ascii_lowercase(),
            sub: sub.trim().to_ascii_lowercase(),
            q: 1.0,
            params: Vec::new(),
        };
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let (k, v) = (
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            );
            if k == "q" {
                out.q = v.parse().unwrap_or(0.0);
            } else {
                out.params.push((k, v));
            }
        }
        Some(out)
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What a request asked for when it wants a Table: the version and what rows carry. The handlers' entry point;
/// it renders with the current time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRequest {
    pub version: TableVersion,
    pub include: IncludeObject,
}

impl TableRequest {
    /// The Table the request asks for (`Accept` and `?includeObject=`), or `None` for plain JSON.
    ///
    /// # Errors
    /// An `includeObject` other than `Metadata`, `None` or `Object` when a Table is asked for (400).
    pub fn from_request(
        headers: &axum::http::HeaderMap,
        include_object: Option<&str>,
    ) -> Result<Option<Self>, TableError> {
        let accept = headers
            .get_all(axum::http::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        match requested(&accept) {
            Some(version) => Ok(Some(Self {
                version,
                include: IncludeObject::from_param(include_object)?,
            })),
            None => Ok(None),
        }
    }

    /// A list (or a page of one) with its `metadata`.
    pub fn list(&self, res: &ResourceInfo, items: &[Value], list_meta: &Value) -> Value {
        to_table(
            res,
            items,
            Some(list_meta),
            self.include,
            Timestamp::now(),
            self.version,
        )
    }

    /// One object (GET of a name).
    pub fn object(&self, res: &ResourceInfo, object: &Value) -> Value {
        to_table(
            res,
            std::slice::from_ref(object),
            None,
            self.include,
            Timestamp::now(),
            self.version,
        )
    }

    /// The object of a watch event; `first` is true for the first event of the stream only.
    pub fn watch_event(&self, res: &ResourceInfo, object: &Value, first: bool) -> Value {
        watch_event_table(
            res,
            object,
            self.include,
            Timestamp::now(),
            self.version,
            first,
        )
    }
}

/// A Table of these objects of `res`, as kube-apiserver renders them. `list_meta` is the list's `metadata`
/// (its resourceVersion, continue and remainingItemCount are kept); without it (a single GET) the Table
/// carries the one object's resourceVersion.
pub fn to_table(
    res: &ResourceInfo,
    items: &[Value],
    list_meta: Option<&Value>,
    include_object: IncludeObject,
    now: Timestamp,
    version: TableVersion,
) -> Value {
    build(res, items, list_meta, include_object, now, version, true)
}

/// The object of one watch event when the watch asked for a Table: a Table with one row. kube-apiserver sends
/// `columnDefinitions` with the first event of a watch only (`with_headers`), `null` afterwards; an ERROR
/// event's `Status` is returned as it is.
pub fn watch_event_table(
    res: &ResourceInfo,
    object: &Value,
    include_object: IncludeObject,
    now: Timestamp,
    version: TableVersion,
    with_headers: bool,
) -> Value {
    if object.get("kind").and_then(Value::as_str) == Some("Status") {
        return object.clone();
    }
    build(
        res,
        std::slice::from_ref(object),
        None,
        include_object,
        now,
        version,
        with_headers,
    )
}

fn build(
    res: &ResourceInfo,
    items: &[Value],
    list_meta: Option<&Value>,
    include: IncludeObject,
    now: Timestamp,
    version: TableVersion,
    with_headers: bool,
) -> Value {
    let printer = res.printer;
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let (cells, conditions) = printer.row(obj, now);
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            if let Some(c) = conditions {
                row.insert("conditions".into(), c);
            }
            row.insert("object".into(), row_object(res, obj, include, version));
            Value::Object(row)
        })
        .collect();
    let mut metadata = Map::new();
    match list_meta {
        Some(meta) => {
            for key in ["resourceVersion", "continue", "remainingItemCount"] {
                if let Some(v) = meta.get(key).filter(|v| !v.is_null() && *v != "") {
                    metadata.insert(key.into(), v.clone());
                }
            }
        }
        None => {
            if let [one] = items
                && let Some(rv) = one
                    .pointer("/metadata/resourceVersion")
                    .filter(|v| *v != "")
            {
                metadata.insert("resourceVersion".into(), rv.clone());
            }
        }
    }
    let columns = if with_headers {
        Value::Array(printer.columns().iter().map(Column::to_json).collect())
    } else {
        Value::Null
    };
    json!({
        "kind": "Table",
        "apiVersion": version.api_version(),
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn row_object(
    res: &ResourceInfo,
    obj: &Value,
    include: IncludeObject,
    version: TableVersion,
) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": version.api_version(),
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
        IncludeObject::Object => {
            let mut full = obj.clone();
            if let Some(m) = full.as_object_mut() {
                m.entry("kind").or_insert_with(|| json!(res.kind));
                m.entry("apiVersion")
                    .or_insert_with(|| json!(res.api_version()));
            }
            full
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    fn now() -> Timestamp {
        "2026-01-01T12:00:00Z".parse().expect("timestamp")
    }

    fn res(kind: &str) -> &'static ResourceInfo {
        herd_api::RESOURCES
            .iter()
            .find(|r| r.kind == kind)
            .expect("resource")
    }

    fn pod(name: &str, rv: &str) -> Value {
        json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv, "uid": "u-1",
                         "labels": {"app": "x"}, "creationTimestamp": "2026-01-01T11:59:00Z"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.1.0.2",
                       "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]},
        })
    }

    fn column_names(table: &Value) -> Vec<(String, i64)> {
        table["columnDefinitions"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["priority"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    }

    #[test]
    fn negotiates_tables_like_kube_apiserver() {
        assert_eq!(requested(KUBECTL), Some(TableVersion::V1));
        assert_eq!(
            requested("application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json"),
            Some(TableVersion::V1Beta1)
        );
        assert_eq!(requested("application/json"), None);
        assert_eq!(requested("*/*"), None);
        assert_eq!(requested(""), None);
        assert_eq!(
            requested("application/json, application/json;as=Table;v=v1;g=meta.k8s.io"),
            None
        );
        // Protobuf, YAML and unknown conversions are skipped; q orders the clauses.
        assert_eq!(
            requested(
                "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io"
            ),
            Some(TableVersion::V1)
        );
        assert_eq!(
            requested("application/json;as=Table;v=v2;g=meta.k8s.io,application/json"),
            None
        );
        assert_eq!(requested("application/json;as=Table;v=v1;g=other.io"), None);
        assert_eq!(
            requested("application/json;q=0.5,application/json;as=Table;v=v1;g=meta.k8s.io"),
            Some(TableVersion::V1)
        );
        assert_eq!(
            requested("application/json;as=Table;v=v1;g=meta.k8s.io;q=0"),
            None
        );
        assert_eq!(
            requested("Application/JSON;AS=Table;V=v1;G=meta.k8s.io"),
            Some(TableVersion::V1)
        );
    }

    #[test]
    fn table_request_reads_accept_and_include_object() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(
            TableRequest::from_request(&headers, Some("bogus")).ok(),
            Some(None)
        );
        headers.insert(axum::http::header::ACCEPT, KUBECTL.parse().expect("header"));
        assert_eq!(
            TableRequest::from_request(&headers, Some("Object")).ok(),
            Some(Some(TableRequest {
                version: TableVersion::V1,
                include: IncludeObject::Object
            }))
        );
        assert!(TableRequest::from_request(&headers, Some("bogus")).is_err());
        let t = TableRequest {
            version: TableVersion::V1,
            include: IncludeObject::Metadata,
        };
        assert_eq!(
            t.object(res("Pod"), &pod("a", "7"))["rows"][0]["cells"][0],
            "a"
        );
        assert_eq!(
            t.list(res("Pod"), &[], &json!({"resourceVersion": "3"}))["metadata"]["resourceVersion"],
            "3"
        );
        assert_eq!(
            t.watch_event(res("Pod"), &pod("a", "7"), false)["columnDefinitions"],
            Value::Null
        );
    }

    #[test]
    fn include_object_parameter() {
        assert_eq!(
            IncludeObject::from_param(None).ok(),
            Some(IncludeObject::Metadata)
        );
        assert_eq!(
            IncludeObject::from_param(Some("")).ok(),
            Some(IncludeObject::Metadata)
        );
        assert_eq!(
            IncludeObject::from_param(Some("Object")).ok(),
            Some(IncludeObject::Object)
        );
        assert_eq!(
            IncludeObject::from_param(Some("None")).ok(),
            Some(IncludeObject::None)
        );
        let err = IncludeObject::from_param(Some("All")).expect_err("rejected");
        assert_eq!(
            err.to_string(),
            "Unable to convert to Table as requested: includeObject: Unsupported value: \"All\": supported values: \"Metadata\", \"None\", \"Object\""
        );
        assert!(matches!(ApiError::from(err), ApiError::BadRequest(_)));
    }

    #[test]
    fn list_table_keeps_list_meta_and_carries_partial_object_metadata() {
        let items = [pod("a", "7"), pod("b", "8")];
        let meta = json!({"resourceVersion": "9", "continue": "tok", "remainingItemCount": 3});
        let t = to_table(
            res("Pod"),
            &items,
            Some(&meta),
            IncludeObject::Metadata,
            now(),
            TableVersion::V1,
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], meta);
        let rows = t["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0]["cells"],
            json!([
                "a", "1/1", "Running", "0", "60s", "10.1.0.2", "n1", "<none>", "<none>"
            ])
        );
        assert_eq!(
            rows[1]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": items[1]["metadata"]})
        );
        assert!(rows[0].get("conditions").is_none());
        let empty = to_table(
            res("Pod"),
            &[],
            Some(&json!({"resourceVersion": "9"})),
            IncludeObject::Metadata,
            now(),
            TableVersion::V1,
        );
        assert_eq!(empty["rows"], json!([]));
        assert_eq!(empty["metadata"], json!({"resourceVersion": "9"}));
    }

    #[test]
    fn single_object_table_uses_its_resource_version() {
        let t = to_table(
            res("Pod"),
            &[pod("a", "7")],
            None,
            IncludeObject::Metadata,
            now(),
            TableVersion::V1Beta1,
        );
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1beta1");
        assert_eq!(t["metadata"], json!({"resourceVersion": "7"}));
        assert_eq!(t["rows"][0]["object"]["apiVersion"], "meta.k8s.io/v1beta1");
    }

    #[test]
    fn include_object_object_and_none() {
        let mut bare = pod("a", "7");
        if let Some(m) = bare.as_object_mut() {
            m.remove("kind");
            m.remove("apiVersion");
        }
        let full = to_table(
            res("Pod"),
            &[bare.clone()],
            None,
            IncludeObject::Object,
            now(),
            TableVersion::V1,
        );
        let object = &full["rows"][0]["object"];
        assert_eq!(
            (object["kind"].clone(), object["apiVersion"].clone()),
            (json!("Pod"), json!("v1"))
        );
        assert_eq!(object["spec"], bare["spec"]);
        let none = to_table(
            res("Pod"),
            &[bare],
            None,
            IncludeObject::None,
            now(),
            TableVersion::V1,
        );
        assert_eq!(none["rows"][0]["object"], Value::Null);
    }

    #[test]
    fn finished_pods_have_row_conditions() {
        let mut done = pod("a", "7");
        done["status"] = json!({"phase": "Succeeded"});
        let t = to_table(
            res("Pod"),
            &[done],
            None,
            IncludeObject::Metadata,
            now(),
            TableVersion::V1,
        );
        assert_eq!(t["rows"][0]["conditions"][0]["type"], "Completed");
    }

    #[test]
    fn watch_events_send_headers_once_and_pass_status_through() {
        let first = watch_event_table(
            res("Pod"),
            &pod("a", "7"),
            IncludeObject::Metadata,
            now(),
            TableVersion::V1,
            true,
        );
        assert_eq!(column_names(&first).len(), 9);
        assert_eq!(first["metadata"]["resourceVersion"], "7");
        assert_eq!(first["rows"].as_array().map(Vec::len), Some(1));
        let later = watch_event_table(
            res("Pod"),
            &pod("a", "8"),
            IncludeObject::Metadata,
            now(),
            TableVersion::V1,
            false,
        );
        assert_eq!(later["columnDefinitions"], Value::Null);
        assert_eq!(later["rows"][0]["cells"][0], "a");
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410, "reason": "Expired"});
        assert_eq!(
            watch_event_table(
                res("Pod"),
                &status,
                IncludeObject::Metadata,
                now(),
                TableVersion::V1,
                true
            ),
            status
        );
    }

    #[test]
    fn columns_per_kind_match_the_printers() {
        let columns = |kind: &str| {
            let t = to_table(
                res(kind),
                &[],
                None,
                IncludeObject::Metadata,
                now(),
                TableVersion::V1,
            );
            column_names(&t)
        };
        let named = |cols: &[(&str, i64)]| {
            cols.iter()
                .map(|(n, p)| (n.to_string(), *p))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            columns("Pod"),
            named(&[
                ("Name", 0),
                ("Ready", 0),
                ("Status", 0),
                ("Restarts", 0),
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1)
            ])
        );
        assert_eq!(
            columns("Deployment"),
            named(&[
                ("Name", 0),
                ("Ready", 0),
                ("Up-to-date", 0),
                ("Available", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1)
            ])
        );
        assert_eq!(
            columns("ReplicaSet"),
            named(&[
                ("Name", 0),
                ("Desired", 0),
                ("Current", 0),
                ("Ready", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1)
            ])
        );
        assert_eq!(
            columns("Service"),
            named(&[
                ("Name", 0),
                ("Type", 0),
                ("Cluster-IP", 0),
                ("External-IP", 0),
                ("Port(s)", 0),
                ("Age", 0),
                ("Selector", 1)
            ])
        );
        assert_eq!(
            columns("Node"),
            named(&[
                ("Name", 0),
                ("Status", 0),
                ("Roles", 0),
                ("Age", 0),
                ("Version", 0),
                ("Internal-IP", 1),
                ("External-IP", 1),
                ("OS-Image", 1),
                ("Kernel-Version", 1),
                ("Container-Runtime", 1)
            ])
        );
        assert_eq!(
            columns("Namespace"),
            named(&[("Name", 0), ("Status", 0), ("Age", 0)])
        );
        assert_eq!(
            columns("Endpoints"),
            named(&[("Name", 0), ("Endpoints", 0), ("Age", 0)])
        );
        assert_eq!(
            columns("ConfigMap"),
            named(&[("Name", 0), ("Data", 0), ("Age", 0)])
        );
        assert_eq!(
            columns("ServiceAccount"),
            named(&[("Name", 0), ("Secrets", 0), ("Age", 0)])
        );
        assert_eq!(
            columns("Secret"),
            named(&[("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)])
        );
        assert_eq!(
            columns("Lease"),
            named(&[("Name", 0), ("Holder", 0), ("Age", 0)])
        );
        assert_eq!(
            columns("Event"),
            named(&[
                ("Last Seen", 0),
                ("Type", 0),
                ("Reason", 0),
                ("Object", 0),
                ("Subobject", 1),
                ("Source", 1),
                ("Message", 0),
                ("First Seen", 1),
                ("Count", 1),
                ("Name", 1)
            ])
        );
        let other = ResourceInfo {
            group: "example.com",
            kind: "Widget",
            printer: herd_api::resources::Printer::Default,
            ..*res("Lease")
        };
        let t = to_table(
            &other,
            &[],
            None,
            IncludeObject::Metadata,
            now(),
            TableVersion::V1,
        );
        assert_eq!(column_names(&t), named(&[("Name", 0), ("Created At", 0)]));
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
    }

    #[test]
    fn every_row_has_one_cell_per_column() {
        for r in herd_api::RESOURCES {
            let t = to_table(
                r,
                &[json!({"metadata": {"name": "x"}})],
                None,
                IncludeObject::Metadata,
                now(),
                TableVersion::V1,
            );
            let columns = t["columnDefinitions"].as_array().map_or(0, Vec::len);
            let cells = t["rows"][0]["cells"].as_array().map_or(0, Vec::len);
            assert_eq!(cells, columns, "{}", r.kind);
            let name = t["columnDefinitions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["format"] == "name");
            assert!(name.is_some(), "{} has a name column", r.kind);
        }
    }
}
