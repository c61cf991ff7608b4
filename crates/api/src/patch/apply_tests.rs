//! Server-side apply and field ownership, in the scenarios of kube-apiserver's field manager tests.

use serde_json::{Value, json};

use super::*;

const T1: &str = "2024-05-01T10:00:00Z";
const T2: &str = "2024-05-01T11:00:00Z";
const T3: &str = "2024-05-01T12:00:00Z";

fn deployment(replicas: Value, containers: Value) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}
            }
        }
    });
    if !replicas.is_null() {
        d["spec"]["replicas"] = replicas;
    }
    d
}

fn apply(live: Option<&Value>, config: &Value, manager: &str, force: bool, now: &str) -> Value {
    match server_side_apply(live, config, manager, force, "Deployment", now) {
        Ok(v) => v,
        Err(e) => panic!("apply failed: {e}"),
    }
}

fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["manager"] == manager)
        .unwrap_or(&Value::Null)
}

fn managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["manager"].as_str().map(String::from))
        .collect()
}

#[test]
fn apply_creates_and_records_the_applied_fields() {
    let config = deployment(json!(2), json!([{"name": "app", "image": "app:1"}]));
    let out = apply(None, &config, "kubectl", false, T1);
    assert_eq!(out["spec"]["replicas"], 2);
    assert_eq!(
        entry(&out, "kubectl"),
        &json!({
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                            ".": {}, "f:image": {}, "f:name": {}
                        }}}
                    }
                }
            }
        })
    );
}

#[test]
fn reapplying_without_a_field_removes_it() {
    let first = deployment(
        json!(2),
        json!([{"name": "app", "image": "app:1"}, {"name": "side", "image": "s:1"}]),
    );
    let live = apply(None, &first, "kubectl", false, T1);
    let second = deployment(Value::Null, json!([{"name": "app", "image": "app:2"}]));
    let out = apply(Some(&live), &second, "kubectl", false, T2);
    assert!(out["spec"].get("replicas").is_none(), "{out}");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "app", "image": "app:2"}])
    );
    assert_eq!(entry(&out, "kubectl")["time"], T2);
    assert!(
        entry(&out, "kubectl")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none()
    );
}

#[test]
fn applied_lists_merge_by_key_with_the_live_items() {
    let live = apply(
        None,
        &deployment(json!(1), json!([{"name": "app", "image": "app:1"}])),
        "kubectl",
        false,
        T1,
    );
    // Defaulting and another writer add to the live object.
    let mut edited = live.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
    if let Some(c) = edited["spec"]["template"]["spec"]["containers"].as_array_mut() {
        c.push(json!({"name": "sidecar", "image": "s:1"}));
    }
    let edited = record_update(Some(&live), &edited, "injector", None, T2);
    let out = apply(
        Some(&edited),
        &deployment(json!(1), json!([{"name": "app", "image": "app:2"}])),
        "kubectl",
        false,
        T3,
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([
            {"name": "app", "image": "app:2", "imagePullPolicy": "IfNotPresent"},
            {"name": "sidecar", "image": "s:1"}
        ])
    );
}

#[test]
fn changing_a_field_an_updater_owns_conflicts_unless_forced() {
    let live = apply(
        None,
        &deployment(json!(1), json!([{"name": "app", "image": "app:1"}])),
        "ci",
        false,
        T1,
    );
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    let scaled = record_update(Some(&live), &scaled, "kubectl-client-side-apply", None, T2);
    assert_eq!(
        entry(&scaled, "kubectl-client-side-apply")["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    // The updater took replicas from the applier.
    assert!(
        entry(&scaled, "ci")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none()
    );

    let config = deployment(json!(3), json!([{"name": "app", "image": "app:1"}]));
    let err = match server_side_apply(Some(&scaled), &config, "ci", false, "Deployment", T3) {
        Err(ApplyError::Conflicts(c)) => c,
        other => panic!("expected a conflict, got {other:?}"),
    };
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    assert_eq!(ApplyError::Conflicts(err.clone()).code(), 409);
    let cause = &err.causes()[0];
    assert_eq!(
        (cause.reason, cause.field.as_str(), cause.message.as_str()),
        (
            "FieldManagerConflict",
            ".spec.replicas",
            "conflict with \"kubectl-client-side-apply\" using apps/v1"
        )
    );

    let forced = apply(Some(&scaled), &config, "ci", true, T3);
    assert_eq!(forced["spec"]["replicas"], 3);
    assert_eq!(managers(&forced), ["ci"]);
    assert!(
        entry(&forced, "ci")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_some()
    );
}

#[test]
fn conflicts_name_list_items_by_key() {
    let live = apply(
        None,
        &deployment(json!(1), json!([{"name": "app", "image": "app:1"}])),
        "a",
        false,
        T1,
    );
    let err = server_side_apply(
        Some(&live),
        &deployment(json!(2), json!([{"name": "app", "image": "app:2"}])),
        "b",
        false,
        "Deployment",
        T2,
    );
    let Err(ApplyError::Conflicts(c)) = err else {
        panic!("expected conflicts, got {err:?}");
    };
    assert_eq!(
        c.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"app\"].image"
    );
}

#[test]
fn managers_applying_the_same_value_share_the_field() {
    let live = apply(
        None,
        &deployment(json!(3), json!([{"name": "app", "image": "app:1"}])),
        "a",
        false,
        T1,
    );
    let shared = apply(
        Some(&live),
        &json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3}
        }),
        "b",
        false,
        T2,
    );
    // "b" changed nothing, so its entry has no time yet, and untimed entries sort first.
    assert_eq!(managers(&shared), ["b", "a"]);
    assert!(entry(&shared, "b").get("time").is_none());

    // "a" drops replicas; "b" still owns it, so it stays.
    let a_without = deployment(Value::Null, json!([{"name": "app", "image": "app:1"}]));
    let out = apply(Some(&shared), &a_without, "a", false, T3);
    assert_eq!(out["spec"]["replicas"], 3);
    // Now "b" drops it too and it goes.
    let b_without = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"}
    });
    let out = apply(Some(&out), &b_without, "b", false, T3);
    assert!(out["spec"].get("replicas").is_none(), "{out}");
}

#[test]
fn an_unchanged_apply_returns_the_live_object() {
    let config = deployment(json!(2), json!([{"name": "app", "image": "app:1"}]));
    let live = apply(None, &config, "kubectl", false, T1);
    let again = apply(Some(&live), &config, "kubectl", false, T2);
    assert_eq!(again, live);
}

#[test]
fn fields_set_before_the_first_apply_belong_to_before_first_apply() {
    let live = deployment(json!(4), json!([{"name": "app", "image": "app:1"}]));
    let err = server_side_apply(
        Some(&live),
        &deployment(json!(1), json!([{"name": "app", "image": "app:1"}])),
        "kubectl",
        false,
        "Deployment",
        T1,
    );
    match err {
        Err(ApplyError::Conflicts(c)) => assert_eq!(
            c.to_string(),
            "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
        ),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn kubectl_takes_over_fields_it_applied_client_side() {
    // `kubectl apply` (client-side) created the object; `kubectl apply --server-side` then changes it.
    let mut created = deployment(json!(2), json!([{"name": "app", "image": "app:1"}]));
    let last_applied = created.to_string();
    created["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": last_applied});
    let live = record_update(None, &created, "kubectl-client-side-apply", None, T1);

    let config = deployment(json!(3), json!([{"name": "app", "image": "app:1"}]));
    let out = apply(Some(&live), &config, "kubectl", false, T2);
    assert_eq!(out["spec"]["replicas"], 3);
    let annotation =
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .and_then(|s| serde_json::from_str::<Value>(s).ok());
    assert_eq!(annotation, Some(config));

    // Another manager gets no such pass.
    let err = server_side_apply(
        Some(&live),
        &deployment(json!(3), json!([{"name": "app", "image": "app:1"}])),
        "other",
        false,
        "Deployment",
        T2,
    );
    assert!(matches!(err, Err(ApplyError::Conflicts(_))), "{err:?}");
}

#[test]
fn ports_are_keyed_by_port_and_defaulted_protocol() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}
    });
    let out = match server_side_apply(None, &pod, "kubectl", false, "Pod", T1) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    let ports = &entry(&out, "kubectl")["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]
        ["f:ports"];
    assert_eq!(
        ports,
        &json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
    );
    // The live port was defaulted with protocol TCP; applying it again matches the same item.
    let mut live = out;
    live["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
    let again = match server_side_apply(Some(&live), &pod, "kubectl", false, "Pod", T2) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        again["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
}

#[test]
fn finalizers_are_owned_one_by_one() {
    let cm = |finalizers: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "finalizers": finalizers}, "data": {"k": "v"}})
    };
    let out = match server_side_apply(None, &cm(json!(["a/x"])), "m", false, "ConfigMap", T1) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        entry(&out, "m")["fieldsV1"],
        json!({"f:data": {"f:k": {}}, "f:metadata": {"f:finalizers": {"v:\"a/x\"": {}}}})
    );
    let other =
        match server_side_apply(Some(&out), &cm(json!(["b/y"])), "n", false, "ConfigMap", T2) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
    assert_eq!(other["metadata"]["finalizers"], json!(["a/x", "b/y"]));
}

#[test]
fn malformed_configurations_are_rejected() {
    let bad = |config: Value| match server_side_apply(None, &config, "m", false, "Deployment", T1) {
        Err(e) => e,
        Ok(v) => panic!("expected an error, got {v}"),
    };
    let mut with_managed = deployment(json!(1), json!([]));
    with_managed["metadata"]["managedFields"] = json!([]);
    assert_eq!(
        bad(with_managed),
        ApplyError::BadRequest("metadata.managedFields must be nil".into())
    );
    let mut wrong_version = deployment(json!(1), json!([]));
    wrong_version["apiVersion"] = json!("apps/v1beta1");
    assert_eq!(bad(wrong_version).code(), 400);
    let duplicate = bad(deployment(json!(1), json!([{"name": "a"}, {"name": "a"}])));
    assert_eq!(duplicate.code(), 500);
    assert_eq!(
        duplicate.to_string(),
        "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.template.spec.containers: duplicate entries for key [name=\"a\"]"
    );
    let keyless = bad(deployment(json!(1), json!([{"image": "a"}])));
    assert!(
        keyless.to_string().contains("omits key field \"name\""),
        "{keyless}"
    );
}

#[test]
fn record_update_on_create_owns_what_was_set() {
    let created = deployment(json!(1), json!([{"name": "app", "image": "app:1"}]));
    let out = record_update(None, &created, "kubectl-create", None, T1);
    assert_eq!(
        entry(&out, "kubectl-create"),
        &json!({
            "manager": "kubectl-create",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                            ".": {}, "f:image": {}, "f:name": {}, "f:resources": {}
                        }}}
                    }
                }
            }
        })
    );
}

#[test]
fn record_update_tracks_status_writers_and_skips_untracked_objects() {
    let live = record_update(
        None,
        &deployment(json!(1), json!([])),
        "kubectl-create",
        None,
        T1,
    );
    let mut with_status = live.clone();
    with_status["status"] = json!({"replicas": 1});
    let out = record_update(
        Some(&live),
        &with_status,
        "kube-controller-manager",
        Some("status"),
        T2,
    );
    let e = entry(&out, "kube-controller-manager");
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));

    // An unchanged update adds no entry.
    let same = record_update(Some(&out), &out, "kubectl-edit", None, T3);
    assert_eq!(managers(&same), managers(&out));

    // Objects that never had managedFields stay untracked until applied to.
    let untracked = deployment(json!(1), json!([]));
    let mut changed = untracked.clone();
    changed["spec"]["replicas"] = json!(2);
    let out = record_update(Some(&untracked), &changed, "kubectl-edit", None, T2);
    assert!(out["metadata"].get("managedFields").is_none());

    // A request that clears managedFields clears them.
    let mut reset = live.clone();
    reset["metadata"]["managedFields"] = json!([]);
    let out = record_update(Some(&live), &reset, "kubectl-edit", None, T2);
    assert!(out["metadata"].get("managedFields").is_none());
}
