//! The RBAC kinds with stock kubectl as the admin: the `kubectl create role|rolebinding|clusterrole|
//! clusterrolebinding` generators (protobuf bodies), `kubectl get role,rolebinding -o wide` with kube's
//! columns, a roleRef change refused with kube's message, invalid objects refused with kube's causes, and
//! `kubectl apply -f` of a manifest holding all four kinds. Runs against `herd control` alone.

use super::*;

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";

/// The tables of `kubectl get a,b`: one per kind, separated by an empty line.
fn tables(stdout: &str) -> Vec<Table> {
    stdout
        .split("\n\n")
        .filter(|t| !t.trim().is_empty())
        .map(|t| Table::parse(t).expect("a table"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_lists_and_applies_rbac_objects() {
    let herd = &Herd::up(HerdOptions::control()).await;

    // The generators.
    kubectl(
        herd,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get,list",
            "--resource=pods",
        ],
    )
    .await
    .ok()
    .stdout_has("role.rbac.authorization.k8s.io/pod-reader created");
    let role = herd
        .get_ok(&format!("{RBAC}/namespaces/default/roles/pod-reader"))
        .await;
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])
    );
    kubectl(
        herd,
        &[
            "create",
            "rolebinding",
            "read-pods",
            "--role=pod-reader",
            "--user=jane",
            "--group=devs",
            "--serviceaccount=default:x",
        ],
    )
    .await
    .ok()
    .stdout_has("rolebinding.rbac.authorization.k8s.io/read-pods created");
    let rb = herd
        .get_ok(&format!("{RBAC}/namespaces/default/rolebindings/read-pods"))
        .await;
    assert_eq!(
        rb["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"})
    );
    assert_eq!(rb["subjects"].as_array().map(Vec::len), Some(3), "{rb}");
    kubectl(
        herd,
        &[
            "create",
            "clusterrole",
            "monitoring",
            "--aggregation-rule=rbac.example.com/aggregate-to-monitoring=true",
        ],
    )
    .await
    .ok()
    .stdout_has("clusterrole.rbac.authorization.k8s.io/monitoring created");
    let cr = herd
        .get_ok(&format!("{RBAC}/clusterroles/monitoring"))
        .await;
    assert_eq!(
        cr["aggregationRule"],
        json!({"clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]})
    );
    kubectl(
        herd,
        &[
            "create",
            "clusterrolebinding",
            "x-views",
            "--clusterrole=view",
            "--serviceaccount=default:x",
        ],
    )
    .await
    .ok()
    .stdout_has("clusterrolebinding.rbac.authorization.k8s.io/x-views created");

    // kube's columns: roles NAME / CREATED AT, bindings NAME ROLE AGE and wide the subjects.
    let out = kubectl(herd, &["get", "role,rolebinding", "-o", "wide"])
        .await
        .ok();
    let printed = tables(&out.stdout);
    assert_eq!(printed.len(), 2, "{}", out.stdout);
    assert_eq!(printed[0].columns, ["NAME", "CREATED AT"]);
    let created = printed[0]
        .row("role.rbac.authorization.k8s.io/pod-reader")
        .get("CREATED AT")
        .to_string();
    assert!(
        created.len() == 20 && created.ends_with('Z'),
        "{}",
        out.stdout
    );
    assert_eq!(
        printed[1].columns,
        ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    );
    let row = printed[1].row("rolebinding.rbac.authorization.k8s.io/read-pods");
    assert_eq!(
        [
            row.get("ROLE"),
            row.get("USERS"),
            row.get("GROUPS"),
            row.get("SERVICEACCOUNTS")
        ],
        ["Role/pod-reader", "jane", "devs", "default/x"]
    );
    let out = kubectl(
        herd,
        &["get", "clusterrolebinding", "x-views", "-o", "wide"],
    )
    .await
    .ok();
    let row = out.table();
    let row = row.row("x-views");
    assert_eq!(
        [row.get("ROLE"), row.get("SERVICEACCOUNTS")],
        ["ClusterRole/view", "default/x"]
    );

    // kubectl's RBAC describers read the objects through the typed client.
    kubectl(herd, &["describe", "role", "pod-reader"])
        .await
        .ok()
        .stdout_has("PolicyRule:")
        .stdout_has("pods");
    kubectl(herd, &["describe", "rolebinding", "read-pods"])
        .await
        .ok()
        .stdout_has("Kind:  Role")
        .stdout_has("Name:  pod-reader")
        .stdout_has("jane");

    // A binding's role never changes (kubectl patch's strategic merge patch, as `kubectl edit` sends).
    kubectl(
        herd,
        &[
            "patch",
            "rolebinding",
            "read-pods",
            "-p",
            r#"{"roleRef":{"name":"other"}}"#,
        ],
    )
    .await
    .fails()
    .stderr_has(r#"The RoleBinding "read-pods" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"Role", Name:"other"}: cannot change roleRef"#);
    // Its subjects may change.
    kubectl(
        herd,
        &[
            "patch",
            "rolebinding",
            "read-pods",
            "--type=merge",
            "-p",
            r#"{"subjects":[{"kind":"User","name":"joe"}]}"#,
        ],
    )
    .await
    .ok()
    .stdout_has("rolebinding.rbac.authorization.k8s.io/read-pods patched");
    let rb = herd
        .get_ok(&format!("{RBAC}/namespaces/default/rolebindings/read-pods"))
        .await;
    assert_eq!(
        rb["subjects"],
        json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "joe"}])
    );
    assert_eq!(rb["roleRef"]["name"], "pod-reader");

    // kube's validation, as kubectl prints it; nothing stored.
    let bad = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: bad\n\
               roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: r\n\
               subjects:\n- kind: ServiceAccount\n  name: x\n";
    kubectl_stdin(herd, &["apply", "-f", "-"], bad)
        .await
        .fails()
        .stderr_has(r#"The ClusterRoleBinding "bad" is invalid: "#)
        .stderr_has(r#"* roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole""#)
        .stderr_has("* subjects[0].namespace: Required value");
    assert_eq!(
        herd.get(&format!("{RBAC}/clusterrolebindings/bad")).await.0,
        404
    );

    // kubectl apply of all four kinds, then again with one change. The subjects spell out the apiGroup kube
    // defaults, as kube's examples do: otherwise each apply's three-way patch replaces the (atomic) list and
    // kubectl reports the binding `configured`, against kube-apiserver as here.
    let manifest = |user: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: app-reader\n\
             rules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get]\n\
             - nonResourceURLs: [/healthz]\n  verbs: [get]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: app-readers\n\
             roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: app-reader\n\
             subjects:\n- kind: Group\n  apiGroup: rbac.authorization.k8s.io\n  name: app-team\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: app-writer\n  namespace: default\n\
             rules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [create, update]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: app-writers\n  namespace: default\n\
             roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: app-writer\n\
             subjects:\n- kind: User\n  apiGroup: rbac.authorization.k8s.io\n  name: {user}\n"
        )
    };
    let out = kubectl_stdin(herd, &["apply", "-f", "-"], &manifest("ann"))
        .await
        .ok();
    assert_eq!(
        out.lines(),
        [
            "clusterrole.rbac.authorization.k8s.io/app-reader created",
            "clusterrolebinding.rbac.authorization.k8s.io/app-readers created",
            "role.rbac.authorization.k8s.io/app-writer created",
            "rolebinding.rbac.authorization.k8s.io/app-writers created"
        ]
    );
    let out = kubectl_stdin(herd, &["apply", "-f", "-"], &manifest("bob"))
        .await
        .ok();
    assert_eq!(
        out.lines(),
        [
            "clusterrole.rbac.authorization.k8s.io/app-reader unchanged",
            "clusterrolebinding.rbac.authorization.k8s.io/app-readers unchanged",
            "role.rbac.authorization.k8s.io/app-writer unchanged",
            "rolebinding.rbac.authorization.k8s.io/app-writers configured"
        ]
    );
    let rb = herd
        .get_ok(&format!(
            "{RBAC}/namespaces/default/rolebindings/app-writers"
        ))
        .await;
    assert_eq!(rb["subjects"][0]["name"], "bob");
    let cr = herd
        .get_ok(&format!("{RBAC}/clusterroles/app-reader"))
        .await;
    assert_eq!(cr["rules"][1]["nonResourceURLs"], json!(["/healthz"]));
}
