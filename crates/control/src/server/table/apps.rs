//! `printStatefulSet` and `printControllerRevision`: their columns and cells.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::cells::{containers, int, replicas, s, since};
use super::columns::{AGE, CONTAINERS_DOC, Column, IMAGES_DOC, NAME, col, wide};

pub(super) const STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    wide("Containers", "string", CONTAINERS_DOC),
    wide("Images", "string", IMAGES_DOC),
];

pub(super) const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

/// NAME, READY (`ready/desired`), AGE; wide: CONTAINERS, IMAGES.
pub(super) fn stateful_set_row(o: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) = containers(o.pointer("/spec/template/spec/containers"));
    vec![
        json!(s(o, "/metadata/name")),
        json!(format!(
            "{}/{}",
            int(o, "/status/readyReplicas"),
            replicas(o)
        )),
        json!(since(o.pointer("/metadata/creationTimestamp"), now)),
        json!(names),
        json!(images),
    ]
}

/// NAME, CONTROLLER (`statefulset.apps/web`, kube's `formatResourceName` of the controlling owner, or
/// `<none>`), REVISION, AGE.
pub(super) fn controller_revision_row(o: &Value, now: Timestamp) -> Vec<Value> {
    let controller = o
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
        .map_or_else(
            || "<none>".to_string(),
            |r| {
                let group = r["apiVersion"]
                    .as_str()
                    .and_then(|v| v.rsplit_once('/'))
                    .map(|(group, _)| group)
                    .unwrap_or_default();
                let kind = r["kind"].as_str().unwrap_or_default();
                let kind = if group.is_empty() {
                    kind.to_lowercase()
                } else {
                    format!("{}.{group}", kind.to_lowercase())
                };
                format!("{kind}/{}", r["name"].as_str().unwrap_or_default())
            },
        );
    vec![
        json!(s(o, "/metadata/name")),
        json!(controller),
        json!(o.pointer("/revision").and_then(Value::as_i64).unwrap_or(0)),
        json!(since(o.pointer("/metadata/creationTimestamp"), now)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stateful_set_row_is_ready_over_desired() {
        let now: Timestamp = "2026-12-07T00:01:00Z".parse().unwrap();
        let sts = json!({"metadata": {"name": "web", "creationTimestamp": "2026-12-07T00:00:00Z"},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "app", "image": "a:1"}, {"name": "log", "image": "b:2"}]}}},
            "status": {"readyReplicas": 2}});
        assert_eq!(
            stateful_set_row(&sts, now),
            [
                json!("web"),
                json!("2/3"),
                json!("60s"),
                json!("app,log"),
                json!("a:1,b:2")
            ]
        );
    }

    #[test]
    fn a_revision_names_its_controller_with_kind_and_group() {
        let now: Timestamp = "2026-12-07T00:00:05Z".parse().unwrap();
        let owned = json!({"metadata": {"name": "web-5d8f", "creationTimestamp": "2026-12-07T00:00:00Z",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                "uid": "u", "controller": true}]}, "revision": 2, "data": {}});
        assert_eq!(
            controller_revision_row(&owned, now),
            [
                json!("web-5d8f"),
                json!("statefulset.apps/web"),
                json!(2),
                json!("5s")
            ]
        );
        let orphan = json!({"metadata": {"name": "x"}, "revision": 1});
        assert_eq!(controller_revision_row(&orphan, now)[1], json!("<none>"));
    }
}
