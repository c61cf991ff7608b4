//! A StatefulSet of `http-hello` behind its headless Service with stock kubectl: `apply`, `get sts` (and
//! `-o wide`), `rollout status sts`, `scale sts`, `set image` rolled out from the highest ordinal, `get
//! controllerrevisions`, and a guest reaching `web-0.web` by name; and a pod of a set finding, when made again,
//! what it wrote to its claim, which goes with the set (`whenDeleted: Delete`).

use super::*;

const SETS: &str = "/apis/apps/v1/namespaces/default/statefulsets";

fn manifest(image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - name: http
    port: 8080
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: {TEST_GRACE_SECONDS}
      containers:
      - name: http-hello
        image: {image}
        ports:
        - name: http
          containerPort: 8080
        env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
"#
    )
}

/// `kubectl rollout status sts/web`'s last line, once it returns.
async fn rollout_status(herd: &Herd) -> String {
    let out = kubectl(herd, &["rollout", "status", "sts/web", "--timeout=120s"])
        .await
        .ok();
    out.lines().last().copied().unwrap_or_default().to_string()
}

/// The live pods of the set, by name: (image, revision label).
async fn pods(herd: &Herd) -> Vec<(String, String, String)> {
    let list = herd
        .get_ok(&format!("{PODS}?labelSelector=app%3Dweb"))
        .await;
    let mut out: Vec<(String, String, String)> = items(&list)
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .map(|p| {
            (
                s(p, "/metadata/name").to_string(),
                s(p, "/spec/containers/0/image").to_string(),
                s(p, "/metadata/labels/controller-revision-hash").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_runs_a_stateful_set_behind_its_headless_service() {
    let c = Cluster::up(&[("http-hello", "v1"), ("http-hello", "v2")]).await;
    let herd = &c.herd;
    let v1 = c.image("http-hello", "v1");
    let v2 = c.image("http-hello", "v2");

    let out = kubectl_stdin(herd, &["apply", "-f", "-"], &manifest(&v1))
        .await
        .ok();
    assert_eq!(
        out.lines(),
        ["service/web created", "statefulset.apps/web created"]
    );
    let set = herd.get_ok(&format!("{SETS}/web")).await;
    assert_eq!(s(&set, "/spec/podManagementPolicy"), "OrderedReady");

    // rollout status waits for both pods, made in order.
    let done = rollout_status(herd).await;
    let set = herd.get_ok(&format!("{SETS}/web")).await;
    let first = s(&set, "/status/currentRevision").to_string();
    // (kubectl reports any RollingUpdate with a partition, which kube defaults to 0, as partitioned.)
    assert_eq!(
        done,
        "partitioned roll out complete: 2 new pods have been updated..."
    );
    let names: Vec<String> = pods(herd).await.into_iter().map(|p| p.0).collect();
    assert_eq!(names, ["web-0", "web-1"]);
    let web0 = herd.get_ok(&format!("{PODS}/web-0")).await;
    let web1 = herd.get_ok(&format!("{PODS}/web-1")).await;
    assert!(
        s(&web0, "/metadata/creationTimestamp") <= s(&web1, "/metadata/creationTimestamp"),
        "web-1 before web-0"
    );

    let table = kubectl(herd, &["get", "sts"]).await.ok().table();
    assert_eq!(table.columns, ["NAME", "READY", "AGE"]);
    assert_eq!(table.row("web").get("READY"), "2/2");
    let wide = kubectl(herd, &["get", "statefulset", "web", "-o", "wide"])
        .await
        .ok()
        .table();
    assert_eq!(
        wide.columns,
        ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]
    );
    assert_eq!(wide.row("web").get("IMAGES"), v1);

    // A guest reaches a pod of the set by its stable name, through the headless Service.
    herd.create(PODS, &http_hello_pod("client", "client", &v1))
        .await;
    let client = herd.wait_phase("client", "Running").await;
    let client_ip = s(&client, "/status/podIP").to_string();
    let body = herd
        .wait_http(
            &format!("http://{client_ip}:8080/fetch/web-0.web:8080/by-name"),
            "pod=web-0",
            START_TIMEOUT,
        )
        .await;
    assert_eq!(
        body,
        "upstream 200: Hello from herd! pod=web-0 path=/by-name\n"
    );

    // scale goes through statefulsets/scale; web-2 follows.
    kubectl(herd, &["scale", "sts", "web", "--replicas=3"])
        .await
        .ok()
        .stdout_has("statefulset.apps/web scaled");
    rollout_status(herd).await;
    assert_eq!(pods(herd).await.len(), 3);

    // A new image rolls out from web-2 down to web-0.
    kubectl(
        herd,
        &["set", "image", "sts/web", &format!("http-hello={v2}")],
    )
    .await
    .ok();
    let done = rollout_status(herd).await;
    let set = herd.get_ok(&format!("{SETS}/web")).await;
    let second = s(&set, "/status/updateRevision").to_string();
    assert_ne!(second, first);
    assert_eq!(
        done,
        "partitioned roll out complete: 3 new pods have been updated..."
    );
    for (name, image, revision) in pods(herd).await {
        assert_eq!(
            (image.as_str(), revision.as_str()),
            (v2.as_str(), second.as_str()),
            "{name}"
        );
    }
    let revisions = kubectl(herd, &["get", "controllerrevisions"])
        .await
        .ok()
        .table();
    assert_eq!(revisions.columns, ["NAME", "CONTROLLER", "REVISION", "AGE"]);
    assert_eq!(
        revisions.row(&first).get("CONTROLLER"),
        "statefulset.apps/web"
    );
    assert_eq!(revisions.row(&first).get("REVISION"), "1");
    assert_eq!(revisions.row(&second).get("REVISION"), "2");

    // rollout history lists both; undo goes back to the first template, whose revision becomes number 3.
    let history = kubectl(herd, &["rollout", "history", "sts/web"]).await.ok();
    assert!(
        history.stdout.contains("1         <none>") && history.stdout.contains("2         <none>"),
        "{}",
        history.stdout
    );
    kubectl(herd, &["rollout", "undo", "sts/web"])
        .await
        .ok()
        .stdout_has("statefulset.apps/web rolled back");
    rollout_status(herd).await;
    wait_for(
        "every pod back on the first image",
        START_TIMEOUT,
        || async {
            let pods = pods(herd).await;
            if pods.len() == 3
                && pods
                    .iter()
                    .all(|(_, image, revision)| *image == v1 && *revision == first)
            {
                Ok(())
            } else {
                Err(format!("{pods:?}"))
            }
        },
    )
    .await;
    let revisions = kubectl(herd, &["get", "controllerrevisions"])
        .await
        .ok()
        .table();
    assert_eq!(revisions.row(&first).get("REVISION"), "3");

    kubectl(herd, &["delete", "sts", "web"])
        .await
        .ok()
        .stdout_has("statefulset.apps \"web\" deleted");
    wait_for("the set's pods to go", START_TIMEOUT, || async {
        let left = pods(herd).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
}

/// A one-replica StatefulSet of `hello` appending a line to a file of its claim at every start, then
/// running for ever; its claims go with it.
fn notes_manifest(image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: notes
spec:
  serviceName: notes
  replicas: 1
  selector:
    matchLabels:
      app: notes
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: Delete
  template:
    metadata:
      labels:
        app: notes
    spec:
      terminationGracePeriodSeconds: {TEST_GRACE_SECONDS}
      containers:
      - name: hello
        image: {image}
        args: ["--append=/data/notes.txt=started", "--forever"]
        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 64Mi
"#
    )
}

/// The log of pod `notes-0` once it is Running with a uid other than `not`; its uid and log.
async fn running_notes(herd: &Herd, not: &str) -> (String, String) {
    let pod = wait_for("notes-0 running", START_TIMEOUT, || async {
        let (code, pod) = herd.get(&format!("{PODS}/notes-0")).await;
        if code == 200 && s(&pod, "/metadata/uid") != not && running_and_ready(&pod) {
            Ok(pod)
        } else {
            Err(format!("{code}: {}", pod_summary(&pod)))
        }
    })
    .await;
    let log = wait_for("notes-0's log", START_TIMEOUT, || async {
        let log = kubectl(herd, &["logs", "notes-0"]).await.ok().stdout;
        if log.contains("file /data/notes.txt:") {
            Ok(log)
        } else {
            Err(log)
        }
    })
    .await;
    (s(&pod, "/metadata/uid").to_string(), log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_pods_claim_keeps_its_data_when_the_pod_is_replaced() {
    let c = Cluster::up(&[("hello", "v1")]).await;
    let herd = &c.herd;
    kubectl_stdin(
        herd,
        &["apply", "-f", "-"],
        &notes_manifest(&c.image("hello", "v1")),
    )
    .await
    .ok()
    .stdout_has("statefulset.apps/notes created");
    let (first, log) = running_notes(herd, "").await;
    assert!(log.contains("file /data/notes.txt:\nstarted\n"), "{log}");
    let claims = "/api/v1/namespaces/default/persistentvolumeclaims";
    let claim = herd.get_ok(&format!("{claims}/data-notes-0")).await;
    assert_eq!(s(&claim, "/status/phase"), "Bound", "{claim}");
    assert_eq!(
        s(&claim, "/metadata/ownerReferences/0/kind"),
        "StatefulSet",
        "whenDeleted: Delete makes the set the claim's owner"
    );

    // The pod goes; the one made again at ordinal 0 mounts the same claim and finds the first line.
    kubectl(herd, &["delete", "pod", "notes-0"]).await.ok();
    let (_, log) = running_notes(herd, &first).await;
    assert!(
        log.contains("file /data/notes.txt:\nstarted\nstarted\n"),
        "{log}"
    );
    assert_eq!(
        herd.get_ok(&format!("{claims}/data-notes-0")).await["metadata"]["uid"],
        claim["metadata"]["uid"]
    );

    // The set goes, and with it (whenDeleted: Delete) its claim.
    kubectl(herd, &["delete", "sts", "notes"]).await.ok();
    wait_for("the claim to go with the set", START_TIMEOUT, || async {
        match herd.get(&format!("{claims}/data-notes-0")).await {
            (404, _) => Ok(()),
            (code, claim) => Err(format!("{code}: {}", claim["metadata"])),
        }
    })
    .await;
}
