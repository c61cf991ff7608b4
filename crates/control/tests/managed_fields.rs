//! managedFields on every write, over a real socket: creates, updates, non-apply patches and the `scale`
//! and `status` subresources are recorded as Updates under kube-apiserver's manager names (the
//! `fieldManager` option, else the user agent up to its first `/`), the in-process controllers as
//! `kube-controller-manager`; server-side apply then names the manager that set a field, and kubectl's
//! client-side → server-side migration applies without conflict.

mod common;
use common::Plane;

use serde_json::{Value, json};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const KUBECTL: &str = "kubectl/v1.37.1 (linux/amd64) kubernetes/4e2a9d8";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

impl Plane {
    /// A request as kubectl sends it: its user agent, an optional `fieldManager`, a body of `ct`.
    async fn kubectl(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (u16, Value) {
        self.request(method, path, &[("user-agent", KUBECTL)], body)
            .await
    }
}

fn deployment(replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "127.0.0.1:5000/hello:v1"}]}
            }
        }
    })
}

/// `(manager, operation, subresource)` of each managedFields entry.
fn managers(obj: &Value) -> Vec<(String, String, String)> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (text("manager"), text("operation"), text("subresource"))
        })
        .collect()
}

fn entry<'a>(obj: &'a Value, manager: &str, subresource: &str) -> Option<&'a Value> {
    obj.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["subresource"].as_str().unwrap_or("") == subresource)
}

fn has(list: &[(String, String, String)], manager: &str, op: &str, sub: &str) -> bool {
    list.iter()
        .any(|(m, o, s)| m == manager && o == op && s == sub)
}

/// `kubectl apply` (client-side: a create with `fieldManager=kubectl-client-side-apply` and the
/// last-applied annotation), then `kubectl apply --server-side` of the same manifest: no conflict, and
/// the applier owns the fields.
#[tokio::test]
async fn client_side_then_server_side_apply_migrates_without_conflict() {
    let p = Plane::start().await;
    let manifest = deployment(2);
    let mut created = manifest.clone();
    created["metadata"]["annotations"] = json!({LAST_APPLIED: manifest.to_string()});
    let (code, obj) = p
        .kubectl(
            reqwest::Method::POST,
            &format!("{DEPLOYMENTS}?fieldManager=kubectl-client-side-apply&fieldValidation=Strict"),
            Some(("application/json", created.to_string())),
        )
        .await;
    assert_eq!(code, 201, "{obj}");
    let csa = entry(&obj, "kubectl-client-side-apply", "").expect("the create is recorded");
    assert_eq!(csa["operation"], "Update");
    assert_eq!(csa["apiVersion"], "apps/v1");
    assert!(
        csa.pointer("/fieldsV1/f:spec/f:replicas").is_some(),
        "{csa}"
    );

    let (code, applied) = p
        .kubectl(
            reqwest::Method::PATCH,
            &format!("{DEPLOYMENTS}/web?fieldManager=kubectl&fieldValidation=Strict&force=false"),
            Some(("application/apply-patch+yaml", manifest.to_string())),
        )
        .await;
    assert_eq!(code, 200, "{applied}");
    let kubectl = entry(&applied, "kubectl", "").expect("the apply is recorded");
    assert_eq!(kubectl["operation"], "Apply");
    assert!(kubectl.pointer("/fieldsV1/f:spec/f:replicas").is_some());
    p.stop().await;
}

/// After `kubectl scale` (PATCH of `deployments/scale`, manager from the user agent), a server-side
/// apply of other replicas conflicts with the manager that scaled, named as kube-apiserver names it.
#[tokio::test]
async fn server_side_apply_conflict_names_the_scale_manager() {
    let p = Plane::start().await;
    let (code, obj) = p
        .kubectl(
            reqwest::Method::PATCH,
            &format!("{DEPLOYMENTS}/web?fieldManager=kubectl&force=false"),
            Some(("application/apply-patch+yaml", deployment(2).to_string())),
        )
        .await;
    assert!(code < 300, "{code} {obj}");
    assert_eq!(
        managers(&obj),
        [("kubectl".into(), "Apply".into(), String::new())]
    );

    let (code, scale) = p
        .kubectl(
            reqwest::Method::PATCH,
            &format!("{DEPLOYMENTS}/web/scale"),
            Some((
                "application/merge-patch+json",
                json!({"spec": {"replicas": 5}}).to_string(),
            )),
        )
        .await;
    assert_eq!(code, 200, "{scale}");
    let (_, live) = p
        .kubectl(reqwest::Method::GET, &format!("{DEPLOYMENTS}/web"), None)
        .await;
    let scaled = entry(&live, "kubectl", "scale").expect("the scale is recorded");
    assert_eq!(scaled["operation"], "Update");
    assert_eq!(scaled["apiVersion"], "apps/v1");
    assert_eq!(scaled["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));

    let (code, status) = p
        .kubectl(
            reqwest::Method::PATCH,
            &format!("{DEPLOYMENTS}/web?fieldManager=kubectl&force=false"),
            Some(("application/apply-patch+yaml", deployment(3).to_string())),
        )
        .await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(
        status["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );
    p.stop().await;
}

/// Create, PUT, merge patch and `status` writes each record an Update for their manager; the controllers
/// write as `kube-controller-manager`.
#[tokio::test]
async fn every_write_records_its_manager() {
    let p = Plane::start().await;
    let (code, obj) = p
        .kubectl(
            reqwest::Method::POST,
            &format!("{DEPLOYMENTS}?fieldManager=kubectl-create"),
            Some(("application/json", deployment(1).to_string())),
        )
        .await;
    assert_eq!(code, 201, "{obj}");
    assert_eq!(
        managers(&obj),
        [("kubectl-create".into(), "Update".into(), String::new())]
    );

    // The deployment controller's ReplicaSet and its status are kube-controller-manager's (waited for
    // before the Deployment is paused below, after which no controller would make one).
    let mut found = Vec::new();
    for _ in 0..200 {
        let (_, list) = p
            .kubectl(
                reqwest::Method::GET,
                "/apis/apps/v1/namespaces/default/replicasets",
                None,
            )
            .await;
        found = list["items"]
            .as_array()
            .and_then(|items| items.first())
            .map(managers)
            .unwrap_or_default();
        if has(&found, "kube-controller-manager", "Update", "")
            && has(&found, "kube-controller-manager", "Update", "status")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        has(&found, "kube-controller-manager", "Update", "")
            && has(&found, "kube-controller-manager", "Update", "status"),
        "{found:?}"
    );

    // A patch without fieldManager is the user agent's: `kubectl`.
    let (code, obj) = p
        .kubectl(
            reqwest::Method::PATCH,
            &format!("{DEPLOYMENTS}/web"),
            Some((
                "application/strategic-merge-patch+json",
                json!({"metadata": {"labels": {"tier": "front"}}}).to_string(),
            )),
        )
        .await;
    assert_eq!(code, 200, "{obj}");
    let patched = entry(&obj, "kubectl", "").expect("the patch is recorded");
    assert_eq!(
        patched["fieldsV1"],
        json!({"f:metadata": {"f:labels": {".": {}, "f:tier": {}}}})
    );

    // PUT with a manager of its own takes the field from the creator.
    let mut replaced = obj.clone();
    replaced["spec"]["paused"] = json!(true);
    // Unconditional (no resourceVersion), as Deployments allow: the controller may write the status at
    // any moment, which would make a conditional update a Conflict.
    if let Some(meta) = replaced["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    let (code, obj) = p
        .kubectl(
            reqwest::Method::PUT,
            &format!("{DEPLOYMENTS}/web?fieldManager=kubectl-edit"),
            Some(("application/json", replaced.to_string())),
        )
        .await;
    assert_eq!(code, 200, "{obj}");
    assert!(
        entry(&obj, "kubectl-edit", "")
            .and_then(|e| e.pointer("/fieldsV1/f:spec/f:paused"))
            .is_some(),
        "{}",
        obj["metadata"]["managedFields"]
    );

    // A status write is recorded for the status subresource.
    let (code, obj) = p
        .kubectl(
            reqwest::Method::PATCH,
            &format!("{DEPLOYMENTS}/web/status?fieldManager=tester"),
            Some((
                "application/merge-patch+json",
                json!({"status": {"collisionCount": 1}}).to_string(),
            )),
        )
        .await;
    assert_eq!(code, 200, "{obj}");
    assert!(
        entry(&obj, "tester", "status")
            .and_then(|e| e.pointer("/fieldsV1/f:status/f:collisionCount"))
            .is_some(),
        "{}",
        obj["metadata"]["managedFields"]
    );

    // A fieldManager kube-apiserver refuses.
    let (code, status) = p
        .kubectl(
            reqwest::Method::PATCH,
            &format!("{DEPLOYMENTS}/web?fieldManager={}", "m".repeat(129)),
            Some(("application/merge-patch+json", "{}".into())),
        )
        .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes"
    );
    p.stop().await;
}
