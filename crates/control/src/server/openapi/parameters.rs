//! The parameters of the operations, as kube-apiserver publishes them: `fieldValidation` on every write is
//! what tells kubectl that the server validates fields.

use serde_json::{Value, json};

pub fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
           "schema": {"type": "string", "uniqueItems": true}})
}

pub fn query_param(name: &str, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
           "schema": {"type": ty, "uniqueItems": true}})
}

/// (name, type, description) rows of query parameters.
type ParamRows = &'static [(&'static str, &'static str, &'static str)];

fn params(rows: ParamRows) -> Vec<Value> {
    rows.iter().map(|(n, t, d)| query_param(n, t, d)).collect()
}

pub fn list_params() -> Vec<Value> {
    params(&[
        (
            "allowWatchBookmarks",
            "boolean",
            "requests watch events with type \"BOOKMARK\".",
        ),
        (
            "continue",
            "string",
            "the continue token of a previous chunked list call.",
        ),
        (
            "fieldSelector",
            "string",
            "restricts the returned objects by their fields.",
        ),
        (
            "labelSelector",
            "string",
            "restricts the returned objects by their labels.",
        ),
        (
            "limit",
            "integer",
            "the maximum number of objects to return in one response.",
        ),
        (
            "resourceVersion",
            "string",
            "constrains which resource versions the request may be served from.",
        ),
        (
            "resourceVersionMatch",
            "string",
            "how resourceVersion is applied to list calls.",
        ),
        (
            "sendInitialEvents",
            "boolean",
            "with watch=true, starts with synthetic ADDED events for the current state.",
        ),
        (
            "timeoutSeconds",
            "integer",
            "timeout for the list/watch call.",
        ),
        (
            "watch",
            "boolean",
            "watch for changes and return them as a stream of add, update and remove notifications.",
        ),
    ])
}

/// `dryRun`, `fieldManager`, `fieldValidation` (and `force` for PATCH).
pub fn write_params(patch: bool) -> Vec<Value> {
    let mut out = params(&[
        (
            "dryRun",
            "string",
            "When present, modifications are not persisted. Valid values are: - All",
        ),
        (
            "fieldManager",
            "string",
            "a name associated with the actor or entity that is making these changes.",
        ),
        (
            "fieldValidation",
            "string",
            "how to handle unknown or duplicate fields in the request: Ignore, Warn (the default) or Strict (fail with BadRequest).",
        ),
    ]);
    if patch {
        out.push(query_param(
            "force",
            "boolean",
            "Force is going to \"force\" Apply requests.",
        ));
    }
    out
}

pub fn delete_params() -> Vec<Value> {
    params(&[
        (
            "dryRun",
            "string",
            "When present, modifications are not persisted. Valid values are: - All",
        ),
        (
            "gracePeriodSeconds",
            "integer",
            "The duration in seconds before the object should be deleted.",
        ),
        (
            "orphanDependents",
            "boolean",
            "Deprecated: please use the PropagationPolicy.",
        ),
        (
            "propagationPolicy",
            "string",
            "Whether and how garbage collection will be performed: Orphan, Background or Foreground.",
        ),
    ])
}

pub fn log_params() -> Vec<Value> {
    params(&[
        (
            "container",
            "string",
            "The container whose logs to return; defaults to the only container.",
        ),
        ("follow", "boolean", "Follow the log stream of the pod."),
        (
            "limitBytes",
            "integer",
            "The number of bytes to read before terminating the log output.",
        ),
        (
            "previous",
            "boolean",
            "Return the logs of the previous terminated container.",
        ),
        (
            "sinceSeconds",
            "integer",
            "Show logs newer than this many seconds.",
        ),
        (
            "sinceTime",
            "string",
            "Show logs newer than this RFC3339 timestamp.",
        ),
        (
            "tailLines",
            "integer",
            "The number of lines from the end of the logs to show.",
        ),
        (
            "timestamps",
            "boolean",
            "Prefix every line of log output with an RFC3339 timestamp.",
        ),
    ])
}
