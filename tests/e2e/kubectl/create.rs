//! `kubectl create -f` (one object, a multi-document file, `-o json`, `--dry-run=server`), `kubectl run`,
//! and the `kubectl create` generators (namespace, deployment, configmap, secret, service, serviceaccount,
//! job, poddisruptionbudget), which send their bodies as `application/vnd.kubernetes.protobuf`. Runs
//! against `herd control` alone.

use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_from_files_and_generators() {
    let herd = &Herd::up(HerdOptions::control()).await;
    let image = "127.0.0.1:9/http-hello:v1";

    // A multi-document file: a Namespace, then a Pod in it.
    let file = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kc\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: kc\n  labels:\n    made: by-file\n\
         spec:\n  containers:\n  - name: c\n    image: {image}\n"
    );
    let out = kubectl_stdin(herd, &["create", "-f", "-"], &file)
        .await
        .ok();
    assert_eq!(out.lines(), ["namespace/kc created", "pod/p created"]);
    let ns = herd.get_ok(&format!("{NAMESPACES}/kc")).await;
    assert_eq!(s(&ns, "/status/phase"), "Active");
    let stored = herd.get_ok(&format!("{}/p", ns_path("kc", "pods"))).await;
    assert_eq!(s(&stored, "/metadata/namespace"), "kc");
    assert_eq!(s(&stored, "/metadata/labels/made"), "by-file");

    // -n picks the namespace of an object that names none; -o json prints what the server stored.
    let pod2 = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p2"},
        "spec": {"containers": [{"name": "c", "image": image}]},
    });
    let printed = kubectl_stdin(
        herd,
        &["create", "-n", "kc", "-o", "json", "-f", "-"],
        &pod2.to_string(),
    )
    .await
    .ok()
    .json();
    let stored = herd.get_ok(&format!("{}/p2", ns_path("kc", "pods"))).await;
    assert_eq!(printed["metadata"]["uid"], stored["metadata"]["uid"]);
    assert!(
        !s(&printed, "/metadata/creationTimestamp").is_empty(),
        "{printed}"
    );

    // --dry-run=server: validated and answered, never stored.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}, "data": {"a": "1"}});
    kubectl_stdin(
        herd,
        &["create", "-n", "kc", "--dry-run=server", "-f", "-"],
        &cm.to_string(),
    )
    .await
    .ok()
    .stdout_has("configmap/dry created (server dry run)");
    assert_eq!(
        herd.get(&format!("{}/dry", ns_path("kc", "configmaps")))
            .await
            .0,
        404
    );

    // kubectl run.
    kubectl(
        herd,
        &[
            "run",
            "runner",
            "-n",
            "kc",
            &format!("--image={image}"),
            "--restart=Never",
        ],
    )
    .await
    .ok()
    .stdout_has("pod/runner created");
    let runner = herd
        .get_ok(&format!("{}/runner", ns_path("kc", "pods")))
        .await;
    assert_eq!(runner["spec"]["restartPolicy"], "Never");
    assert_eq!(runner["metadata"]["labels"], json!({"run": "runner"}));

    // The generators (typed client-go clients: protobuf request bodies).
    kubectl(herd, &["create", "namespace", "kc2"])
        .await
        .ok()
        .stdout_has("namespace/kc2 created");
    assert_eq!(
        s(
            &herd.get_ok(&format!("{NAMESPACES}/kc2")).await,
            "/status/phase"
        ),
        "Active"
    );

    kubectl(
        herd,
        &[
            "create",
            "deployment",
            "web",
            "-n",
            "kc",
            &format!("--image={image}"),
            "--replicas=2",
        ],
    )
    .await
    .ok()
    .stdout_has("deployment.apps/web created");
    let d = herd
        .get_ok(&format!("{}/web", ns_path("kc", "deployments")))
        .await;
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"], json!({"app": "web"}));
    assert_eq!(s(&d, "/spec/template/spec/containers/0/name"), "http-hello");
    assert_eq!(s(&d, "/spec/template/spec/containers/0/image"), image);

    kubectl(
        herd,
        &[
            "create",
            "configmap",
            "cfg",
            "-n",
            "kc",
            "--from-literal=a=1",
            "--from-literal=b=2",
        ],
    )
    .await
    .ok()
    .stdout_has("configmap/cfg created");
    let cm = herd
        .get_ok(&format!("{}/cfg", ns_path("kc", "configmaps")))
        .await;
    assert_eq!(cm["data"], json!({"a": "1", "b": "2"}));

    kubectl(
        herd,
        &[
            "create",
            "secret",
            "generic",
            "sec",
            "-n",
            "kc",
            "--from-literal=password=pw",
        ],
    )
    .await
    .ok()
    .stdout_has("secret/sec created");
    let secret = herd
        .get_ok(&format!("{}/sec", ns_path("kc", "secrets")))
        .await;
    assert_eq!(secret["data"], json!({"password": "cHc="}));
    assert_eq!(secret["type"], "Opaque");

    kubectl(
        herd,
        &[
            "create",
            "service",
            "clusterip",
            "svc",
            "-n",
            "kc",
            "--tcp=80:8080",
        ],
    )
    .await
    .ok()
    .stdout_has("service/svc created");
    let svc = herd
        .get_ok(&format!("{}/svc", ns_path("kc", "services")))
        .await;
    assert!(
        herd.cidrs.service.contains(s(&svc, "/spec/clusterIP")),
        "{}",
        svc["spec"]
    );
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
    assert_eq!(svc["spec"]["selector"], json!({"app": "svc"}));
}

/// The generators of the kinds added since the first ones (typed client-go clients, so protobuf bodies):
/// every one is created as `kubectl create … --dry-run=client -o json` shows it, none answers 415.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_serviceaccount_job_and_pdb_generators() {
    let herd = &Herd::up(HerdOptions::control()).await;
    kubectl(herd, &["create", "serviceaccount", "robot"])
        .await
        .ok()
        .stdout_has("serviceaccount/robot created");
    let sa = herd
        .get_ok(&format!("{}/robot", ns_path("default", "serviceaccounts")))
        .await;
    assert_eq!(s(&sa, "/metadata/name"), "robot");

    kubectl(
        herd,
        &[
            "create",
            "job",
            "once",
            "--image=127.0.0.1:9/hello:v1",
            "--",
            "/hello",
            "--exit=0",
        ],
    )
    .await
    .ok()
    .stdout_has("job.batch/once created");
    let job = herd
        .get_ok("/apis/batch/v1/namespaces/default/jobs/once")
        .await;
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "once");
    assert_eq!(container["image"], "127.0.0.1:9/hello:v1");
    assert_eq!(container["command"], json!(["/hello", "--exit=0"]));
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");

    kubectl(
        herd,
        &[
            "create",
            "poddisruptionbudget",
            "keep-two",
            "--selector=app=web",
            "--min-available=2",
        ],
    )
    .await
    .ok()
    .stdout_has("poddisruptionbudget.policy/keep-two created");
    kubectl(
        herd,
        &[
            "create",
            "pdb",
            "half",
            "--selector=app=web,tier=front",
            "--max-unavailable=50%",
        ],
    )
    .await
    .ok()
    .stdout_has("poddisruptionbudget.policy/half created");
    let pdbs = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";
    let keep_two = herd.get_ok(&format!("{pdbs}/keep-two")).await;
    assert_eq!(keep_two["spec"]["minAvailable"], 2);
    assert_eq!(
        keep_two["spec"]["selector"],
        json!({"matchLabels": {"app": "web"}})
    );
    let half = herd.get_ok(&format!("{pdbs}/half")).await;
    assert_eq!(half["spec"]["maxUnavailable"], "50%");
    assert_eq!(
        half["spec"]["selector"]["matchLabels"],
        json!({"app": "web", "tier": "front"})
    );
}

/// kube-controller-manager's service account controller: a new namespace gets a `default` ServiceAccount,
/// and gets it back when it is deleted; `kubectl get sa` prints kube's columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_has_a_default_service_account() {
    let herd = &Herd::up(HerdOptions::control()).await;
    kubectl(herd, &["create", "namespace", "team"])
        .await
        .ok()
        .stdout_has("namespace/team created");
    let account = format!("{}/default", ns_path("team", "serviceaccounts"));
    let first = wait_for(
        "the default ServiceAccount",
        Duration::from_secs(30),
        || async {
            match herd.get(&account).await {
                (200, sa) => Ok(sa),
                (status, body) => Err(format!("{status}: {body}")),
            }
        },
    )
    .await;
    let table = kubectl(herd, &["get", "sa", "-n", "team"])
        .await
        .ok()
        .table();
    assert_eq!(table.columns, ["NAME", "SECRETS", "AGE"]);
    assert_eq!(table.row("default").get("SECRETS"), "0");
    // The bootstrap namespaces have one too.
    herd.get_ok(&format!(
        "{}/default",
        ns_path("default", "serviceaccounts")
    ))
    .await;

    kubectl(herd, &["delete", "sa", "default", "-n", "team"])
        .await
        .ok();
    let again = wait_for(
        "the default ServiceAccount again",
        Duration::from_secs(30),
        || async {
            match herd.get(&account).await {
                (200, sa) if sa["metadata"]["uid"] != first["metadata"]["uid"] => Ok(sa),
                (status, body) => Err(format!("{status}: {body}")),
            }
        },
    )
    .await;
    assert_eq!(s(&again, "/metadata/namespace"), "team");
}
