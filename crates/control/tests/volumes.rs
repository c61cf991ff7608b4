//! PersistentVolumes, PersistentVolumeClaims and StorageClasses against a real control plane: the default
//! StorageClass and its admission, the binder (a static volume, the smallest that fits), a
//! WaitForFirstConsumer claim that waits for a pod, the scheduler selecting its node and the local
//! provisioner's volume there, reclaim policies, and the protection finalizers. No node agent runs here,
//! so nothing removes a deleted local volume's directory: its cleanup finalizer keeps the object.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::Plane;

const NS: &str = "/api/v1/namespaces/default";
const PVS: &str = "/api/v1/persistentvolumes";
const CLASSES: &str = "/apis/storage.k8s.io/v1/storageclasses";

impl Plane {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.request(
            method,
            path,
            &[],
            body.map(|b| ("application/json", b.to_string())),
        )
        .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, v: Value) -> Value {
        let (code, out) = self.send(reqwest::Method::POST, path, Some(v)).await;
        assert_eq!(code, 201, "POST {path}: {out}");
        out
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// Polls `path` until `check` holds of the object (404 is `Null`), for up to 20 s.
    async fn wait(&self, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, obj) = self.get(path).await;
            let obj = if code == 404 { Value::Null } else { obj };
            if check(&obj) {
                return obj;
            }
            assert!(Instant::now() < until, "{what}: never; last {obj}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn claim(name: &str, size: &str, class: Option<&str>) -> Value {
    let mut c = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}});
    if let Some(class) = class {
        c["spec"]["storageClassName"] = json!(class);
    }
    c
}

fn host_volume(name: &str, size: &str, class: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
            "storageClassName": class, "hostPath": {"path": format!("/tmp/{name}")}}})
}

fn pod_with(name: &str, claim: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "127.0.0.1:5000/hello:v1",
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}})
}

fn phase(obj: &Value) -> &str {
    obj["status"]["phase"].as_str().unwrap_or_default()
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|l| l.iter().any(|x| x == f))
}

async fn ready_node(p: &Plane, name: &str, root: &str) {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    p.post(
        "/api/v1/nodes",
        json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name},
                "annotations": {"volumes.herd.dev/local-root": root}},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True",
                    "lastHeartbeatTime": now, "lastTransitionTime": now}]}}),
    )
    .await;
}

#[tokio::test]
async fn the_default_class_is_given_to_claims_that_name_none() {
    let p = Plane::start().await;
    let (code, class) = p.get(&format!("{CLASSES}/standard")).await;
    assert_eq!(code, 200, "{class}");
    assert_eq!(
        (
            &class["provisioner"],
            &class["volumeBindingMode"],
            &class["reclaimPolicy"],
            &class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"]
        ),
        (
            &json!("herd.dev/local"),
            &json!("WaitForFirstConsumer"),
            &json!("Delete"),
            &json!("true")
        )
    );
    let defaulted = p
        .post(
            &format!("{NS}/persistentvolumeclaims"),
            claim("a", "1Gi", None),
        )
        .await;
    assert_eq!(defaulted["spec"]["storageClassName"], "standard");
    assert_eq!(phase(&defaulted), "Pending");
    // An empty class asks for none: it stays empty.
    let classless = p
        .post(
            &format!("{NS}/persistentvolumeclaims"),
            claim("b", "1Gi", Some("")),
        )
        .await;
    assert_eq!(classless["spec"]["storageClassName"], "");
    // Bad claims are kube's 422.
    let (code, status) = p
        .send(
            reqwest::Method::POST,
            &format!("{NS}/persistentvolumeclaims"),
            Some(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "bad"}, "spec": {"resources": {"requests": {"storage": "-1"}}}})),
        )
        .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "PersistentVolumeClaim \"bad\" is invalid: [spec.accessModes: Required value: at least 1 access mode is required, spec.resources[storage]: Invalid value: \"-1\": must be greater than or equal to 0]"
    );
    p.stop().await;
}

#[tokio::test]
async fn an_immediate_claim_binds_the_smallest_fitting_volume_and_retain_releases_it() {
    let p = Plane::start().await;
    p.post(PVS, host_volume("big", "10Gi", "")).await;
    p.post(PVS, host_volume("fits", "2Gi", "")).await;
    p.post(PVS, host_volume("small", "500Mi", "")).await;
    let available = p
        .wait(&format!("{PVS}/fits"), "fits Available", |v| {
            phase(v) == "Available"
        })
        .await;
    assert_eq!(available["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert!(has_finalizer(&available, "kubernetes.io/pv-protection"));
    p.post(
        &format!("{NS}/persistentvolumeclaims"),
        claim("data", "1Gi", Some("")),
    )
    .await;
    let bound = p
        .wait(
            &format!("{NS}/persistentvolumeclaims/data"),
            "claim Bound",
            |c| phase(c) == "Bound",
        )
        .await;
    assert_eq!(bound["spec"]["volumeName"], "fits");
    assert_eq!(bound["status"]["capacity"]["storage"], "2Gi");
    assert_eq!(
        bound["status"]["accessModes"],
        json!(["ReadWriteOnce", "ReadWriteMany"])
    );
    assert!(has_finalizer(&bound, "kubernetes.io/pvc-protection"));
    let volume = p
        .wait(&format!("{PVS}/fits"), "fits Bound", |v| {
            phase(v) == "Bound"
        })
        .await;
    assert_eq!(volume["spec"]["claimRef"]["name"], "data");
    assert_eq!(volume["spec"]["claimRef"]["uid"], bound["metadata"]["uid"]);

    // A bound volume being deleted waits for its claim (pv-protection).
    let (code, _) = p.delete(&format!("{PVS}/fits")).await;
    assert_eq!(code, 200);
    let (_, held) = p.get(&format!("{PVS}/fits")).await;
    assert!(!held["metadata"]["deletionTimestamp"].is_null(), "{held}");
    // The claim goes: Retain keeps the volume, Released, until its own deletion goes through.
    p.delete(&format!("{NS}/persistentvolumeclaims/data")).await;
    p.wait(&format!("{PVS}/fits"), "fits deleted once released", |v| {
        v.is_null()
    })
    .await;
    let (_, big) = p.get(&format!("{PVS}/big")).await;
    assert_eq!(phase(&big), "Available");
    p.stop().await;
}

#[tokio::test]
async fn a_released_retained_volume_stays_released() {
    let p = Plane::start().await;
    p.post(PVS, host_volume("kept", "1Gi", "manual")).await;
    p.post(
        &format!("{NS}/persistentvolumeclaims"),
        claim("data", "1Gi", Some("manual")),
    )
    .await;
    // `manual` is no StorageClass: kube binds by name alone.
    p.wait(&format!("{PVS}/kept"), "kept Bound", |v| {
        phase(v) == "Bound"
    })
    .await;
    p.delete(&format!("{NS}/persistentvolumeclaims/data")).await;
    let released = p
        .wait(&format!("{PVS}/kept"), "kept Released", |v| {
            phase(v) == "Released"
        })
        .await;
    // Its claimRef stays: a new claim of the same name does not get it back.
    assert_eq!(released["spec"]["claimRef"]["name"], "data");
    p.post(
        &format!("{NS}/persistentvolumeclaims"),
        claim("data", "1Gi", Some("manual")),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, again) = p.get(&format!("{NS}/persistentvolumeclaims/data")).await;
    assert_eq!(phase(&again), "Pending", "{again}");
    let (_, still) = p.get(&format!("{PVS}/kept")).await;
    assert_eq!(phase(&still), "Released");
    p.stop().await;
}

#[tokio::test]
async fn a_wait_for_first_consumer_claim_is_provisioned_on_its_pods_node() {
    let p = Plane::start().await;
    ready_node(&p, "n1", "/srv/herd/n1/volumes").await;
    let created = p
        .post(
            &format!("{NS}/persistentvolumeclaims"),
            claim("data", "64Mi", None),
        )
        .await;
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    // Nothing uses it yet: it waits, with kube's event.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, events) = p.get(&format!("{NS}/events")).await;
        let waiting = events["items"].as_array().is_some_and(|items| {
            items.iter().any(|e| {
                e["reason"] == "WaitForFirstConsumer"
                    && e["message"] == "waiting for first consumer to be created before binding"
            })
        });
        if waiting {
            break;
        }
        assert!(
            Instant::now() < until,
            "no WaitForFirstConsumer event: {events}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, pvs) = p.get(PVS).await;
    assert_eq!(pvs["items"], json!([]), "nothing provisioned before a pod");

    // A pod using it: the scheduler selects n1 for the claim, the provisioner makes the volume there, and
    // the pod is bound once the claim is.
    p.post(&format!("{NS}/pods"), pod_with("writer", "data"))
        .await;
    let pod = p
        .wait(&format!("{NS}/pods/writer"), "writer bound", |pod| {
            pod["spec"]["nodeName"] == "n1"
        })
        .await;
    assert_eq!(pod["spec"]["nodeName"], "n1");
    let bound = p
        .wait(
            &format!("{NS}/persistentvolumeclaims/data"),
            "claim Bound",
            |c| phase(c) == "Bound",
        )
        .await;
    let annotations = &bound["metadata"]["annotations"];
    assert_eq!(annotations["volume.kubernetes.io/selected-node"], "n1");
    assert_eq!(
        annotations["volume.kubernetes.io/storage-provisioner"],
        "herd.dev/local"
    );
    let pv_name = format!("pvc-{uid}");
    assert_eq!(bound["spec"]["volumeName"], json!(pv_name));
    let (_, pv) = p.get(&format!("{PVS}/{pv_name}")).await;
    assert_eq!(
        pv["spec"]["local"]["path"],
        json!(format!("/srv/herd/n1/volumes/{pv_name}"))
    );
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
        json!({"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]})
    );
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["spec"]["capacity"]["storage"], "64Mi");
    assert_eq!(pv["metadata"]["labels"]["volumes.herd.dev/node"], "n1");
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "herd.dev/local"
    );

    // pvc-protection: the claim stays while the pod uses it.
    p.delete(&format!("{NS}/persistentvolumeclaims/data")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, held) = p.get(&format!("{NS}/persistentvolumeclaims/data")).await;
    assert_eq!(code, 200, "{held}");
    assert!(!held["metadata"]["deletionTimestamp"].is_null());
    assert!(has_finalizer(&held, "kubernetes.io/pvc-protection"));
    // A second pod of a claim being deleted is unschedulable, in kube's words.
    p.post(&format!("{NS}/pods"), pod_with("late", "data"))
        .await;
    let late = p
        .wait(&format!("{NS}/pods/late"), "late unschedulable", |pod| {
            pod["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "PodScheduled" && c["status"] == "False")
            })
        })
        .await;
    let message = late["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap()["message"]
        .clone();
    assert_eq!(
        message,
        "0/1 nodes are available: persistentvolumeclaim \"data\" is being deleted. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    // The pod goes (no node agent here: deleted at once): the claim goes, and Delete deletes the volume,
    // which waits for its node to remove the directory (the cleanup finalizer).
    p.delete(&format!("{NS}/pods/writer?gracePeriodSeconds=0"))
        .await;
    p.delete(&format!("{NS}/pods/late?gracePeriodSeconds=0"))
        .await;
    p.wait(
        &format!("{NS}/persistentvolumeclaims/data"),
        "claim gone",
        Value::is_null,
    )
    .await;
    let deleting = p
        .wait(&format!("{PVS}/{pv_name}"), "volume being deleted", |v| {
            !v["metadata"]["deletionTimestamp"].is_null()
        })
        .await;
    assert_eq!(
        deleting["metadata"]["finalizers"],
        json!(["volumes.herd.dev/local-cleanup"]),
        "pv-protection let go of a released volume"
    );
    assert_eq!(phase(&deleting), "Released");
    p.stop().await;
}

#[tokio::test]
async fn a_pod_of_a_missing_claim_is_unschedulable_in_kubes_words() {
    let p = Plane::start().await;
    ready_node(&p, "n1", "/srv/n1").await;
    p.post(&format!("{NS}/pods"), pod_with("orphan", "nowhere"))
        .await;
    let pod = p
        .wait(
            &format!("{NS}/pods/orphan"),
            "orphan unschedulable",
            |pod| {
                pod["status"]["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["reason"] == "Unschedulable"))
            },
        )
        .await;
    assert_eq!(
        pod["status"]["conditions"][0]["message"],
        "0/1 nodes are available: persistentvolumeclaim \"nowhere\" not found. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    // Its claim created: the pod is scheduled.
    p.post(
        &format!("{NS}/persistentvolumeclaims"),
        claim("nowhere", "1Mi", None),
    )
    .await;
    p.wait(&format!("{NS}/pods/orphan"), "orphan bound", |pod| {
        pod["spec"]["nodeName"] == "n1"
    })
    .await;
    p.stop().await;
}
