//! Strategic merge patch on the kinds herd serves, in the shapes kubectl sends (cases after
//! apimachinery's strategicpatch tests, on real Kubernetes fields).

use serde_json::{Value, json};

use super::*;

fn patched(kind: &str, original: Value, patch: Value) -> Value {
    match strategic_merge(&original, &patch, kind) {
        Ok(v) => v,
        Err(e) => panic!("patch failed: {e}"),
    }
}

fn pod(containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
}

#[test]
fn containers_merge_by_name_keeping_the_live_order() {
    let original = pod(json!([
        {"name": "a", "image": "a:1", "imagePullPolicy": "IfNotPresent"},
        {"name": "b", "image": "b:1"}
    ]));
    let out = patched(
        "Pod",
        original,
        json!({"spec": {"containers": [{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([
            {"name": "a", "image": "a:1", "imagePullPolicy": "IfNotPresent"},
            {"name": "b", "image": "b:2"},
            {"name": "c", "image": "c:1"}
        ])
    );
}

#[test]
fn new_items_come_before_the_live_items_they_do_not_follow() {
    let out = patched(
        "Pod",
        pod(json!([{"name": "a"}])),
        json!({"spec": {"containers": [{"name": "new"}]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "new"}, {"name": "a"}])
    );
}

#[test]
fn env_merges_by_name_inside_a_deployment_template() {
    let original = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    ]}}}});
    let out = patched(
        "Deployment",
        original,
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "B", "value": "3"}]}
        ]}}}}),
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}])
    );
}

#[test]
fn ports_merge_by_container_port() {
    let original = pod(json!([{"name": "app", "ports": [
        {"containerPort": 80, "name": "http", "protocol": "TCP"},
        {"containerPort": 443, "protocol": "TCP"}
    ]}]));
    let out = patched(
        "Pod",
        original,
        json!({"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 443, "name": "https"}]}]}}),
    );
    assert_eq!(
        out["spec"]["containers"][0]["ports"],
        json!([
            {"containerPort": 80, "name": "http", "protocol": "TCP"},
            {"containerPort": 443, "name": "https", "protocol": "TCP"}
        ])
    );
}

#[test]
fn service_ports_merge_by_port() {
    let original = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
    let out = patched(
        "Service",
        original,
        json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
    );
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port": 80, "targetPort": 9090}])
    );
}

#[test]
fn patch_delete_removes_a_container_and_patch_replace_replaces_the_list() {
    let original = pod(json!([{"name": "a"}, {"name": "b"}]));
    let out = patched(
        "Pod",
        original.clone(),
        json!({"spec": {"containers": [{"$patch": "delete", "name": "a"}]}}),
    );
    assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));

    let out = patched(
        "Pod",
        original,
        json!({"spec": {"containers": [{"name": "z"}, {"$patch": "replace"}]}}),
    );
    assert_eq!(out["spec"]["containers"], json!([{"name": "z"}]));
}

#[test]
fn patch_replace_and_delete_on_maps() {
    let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
    let out = patched(
        "ConfigMap",
        original.clone(),
        json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
    let out = patched(
        "ConfigMap",
        original,
        json!({"metadata": {"labels": {"$patch": "delete"}}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({}));
}

#[test]
fn null_deletes_a_key() {
    let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"k": "v"}});
    let out = patched(
        "ConfigMap",
        original,
        json!({"metadata": {"labels": {"a": null}}, "data": null, "binaryData": {"x": null}}),
    );
    assert_eq!(
        out,
        json!({"metadata": {"labels": {"b": "2"}}, "binaryData": {}})
    );
}

#[test]
fn set_element_order_orders_the_merged_list() {
    // What `kubectl apply` sends after swapping two containers and adding a third.
    let original = pod(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
    let out = patched(
        "Pod",
        original,
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "c"}, {"name": "a"}],
            "containers": [{"name": "c", "image": "c"}]
        }}),
    );
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["b", "c", "a"]);
}

#[test]
fn set_element_order_keeps_server_only_items_in_place() {
    let original = pod(json!([{"name": "a"}, {"name": "server"}, {"name": "b"}]));
    let out = patched(
        "Pod",
        original,
        json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "server"}, {"name": "b"}, {"name": "a"}])
    );
}

#[test]
fn deleting_and_adding_under_set_element_order_orders_like_kube() {
    // kube merges in place, so the live order it interleaves by is the list after the deletion with
    // the added item in the freed slot: [b, d, c].
    let original = pod(json!([{"name": "a"}, {"name": "b"}, {"name": "d"}]));
    let out = patched(
        "Pod",
        original,
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "c"}],
            "containers": [{"name": "c"}, {"$patch": "delete", "name": "a"}]
        }}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "b"}, {"name": "d"}, {"name": "c"}])
    );
}

#[test]
fn primitive_lists_take_set_element_order_and_deletions_together() {
    let out = patched(
        "Pod",
        json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        json!({"metadata": {
            "$setElementOrder/finalizers": ["c", "a"],
            "$deleteFromPrimitiveList/finalizers": ["b"]
        }}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "a"]));
}

#[test]
fn finalizers_merge_as_a_set_and_delete_from_primitive_list() {
    let original = json!({"metadata": {"finalizers": ["a", "b"]}});
    let out = patched(
        "Namespace",
        original.clone(),
        json!({"metadata": {"finalizers": ["b", "c"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    let out = patched(
        "Namespace",
        original,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
}

#[test]
fn lists_without_merge_key_are_replaced() {
    let original = pod(json!([{"name": "a", "args": ["x", "y"]}]));
    let mut original = original;
    original["spec"]["tolerations"] = json!([{"key": "k1", "operator": "Exists"}]);
    let out = patched(
        "Pod",
        original,
        json!({"spec": {
            "tolerations": [{"key": "k2", "operator": "Exists"}],
            "containers": [{"name": "a", "args": ["z"]}]
        }}),
    );
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key": "k2", "operator": "Exists"}])
    );
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["z"]));
}

#[test]
fn owner_references_merge_by_uid_and_conditions_by_type() {
    let original = json!({
        "metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]},
        "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}
    });
    let out = patched(
        "Pod",
        original,
        json!({
            "metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }),
    );
    assert_eq!(
        out["metadata"]["ownerReferences"],
        json!([{"uid": "2", "name": "b"}, {"uid": "1", "name": "a"}])
    );
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
    );
}

#[test]
fn retain_keys_clears_the_volume_source_being_replaced() {
    // kubectl's patch when a volume changes from emptyDir to a configMap.
    let original = pod(json!([]));
    let mut original = original;
    original["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}]);
    let out = patched(
        "Pod",
        original,
        json!({"spec": {"volumes": [
            {"$retainKeys": ["configMap", "name"], "name": "v", "configMap": {"name": "cm"}}
        ]}}),
    );
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name": "v", "configMap": {"name": "cm"}}])
    );
}

#[test]
fn new_fields_are_added_without_directives() {
    let out = patched(
        "Deployment",
        json!({"spec": {}}),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
    );
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn errors_carry_kube_status_codes() {
    let err = |kind: &str, original: Value, patch: Value| match strategic_merge(
        &original, &patch, kind,
    ) {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e,
    };
    let e = err(
        "Pod",
        pod(json!([{"name": "a"}])),
        json!({"spec": {"containers": [{"image": "x"}]}}),
    );
    assert_eq!(e.code(), 422);
    assert!(
        e.to_string()
            .contains("does not contain declared merge key: name"),
        "{e}"
    );

    let e = err(
        "Pod",
        json!({"metadata": {}}),
        json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
    );
    assert_eq!(
        (e.code(), e.to_string().as_str()),
        (400, "invalid patch format of primitive list")
    );

    let e = err(
        "Pod",
        json!({"spec": {"volumes": [{"name": "v"}]}}),
        json!({"spec": {"volumes": [{"$retainKeys": ["name"], "name": "v", "secret": {}}]}}),
    );
    assert_eq!(e.code(), 400);

    let e = err(
        "Pod",
        json!({"spec": {"containers": [["a"]]}}),
        json!({"spec": {"containers": [["b"]]}}),
    );
    assert_eq!(e.code(), 422);

    let e = err(
        "Pod",
        json!({"metadata": {}}),
        json!({"metadata": {"$patch": "explode"}}),
    );
    assert!(
        e.to_string().starts_with("unknown patch type: explode"),
        "{e}"
    );

    assert_eq!(
        err("Widget", json!({}), json!({})),
        PatchError::UnsupportedKind
    );
    assert_eq!(err("Pod", json!({}), json!([1])).code(), 400);
}
