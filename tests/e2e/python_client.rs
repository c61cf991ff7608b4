//! The official Python client (PyPI `kubernetes` 37.x) against a running herd: the scripts in tests/python
//! assert each behaviour themselves and exit non-zero with a message; these tests run them with `python3`
//! and then check the state they left through the API.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::*;

const CLIENT_VERSION: &str = "37.0.2";
const INSTALL_HINT: &str = "pip install kubernetes==37.0.2";
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// `python3` on PATH, checked once to import `kubernetes` at the pinned version.
fn python3() -> &'static str {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import kubernetes; print(kubernetes.__version__)"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && version == CLIENT_VERSION,
            "python3 has kubernetes {version:?}, these tests need {CLIENT_VERSION}: {INSTALL_HINT}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    "python3"
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// Runs `python3 tests/python/<name> --kubeconfig … ARGS` and asserts it exits 0.
async fn run_script(herd: &Herd, name: &str, args: &[&str]) -> ToolOutput {
    run_script_as(herd, &herd.kubeconfig, name, args).await
}

/// [`run_script`] with another kubeconfig for the same herd (another user's credentials).
pub(crate) async fn run_script_as(
    herd: &Herd,
    kubeconfig: &std::path::Path,
    name: &str,
    args: &[&str],
) -> ToolOutput {
    let path = script(name);
    let command = format!("python3 {} {}", path.display(), args.join(" "));
    let child = tokio::process::Command::new(python3())
        .arg(&path)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("NO_PROXY", "127.0.0.0/8,localhost")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, child)
        .await
        .unwrap_or_else(|_| panic!("`{command}` took over {SCRIPT_TIMEOUT:?}\n{}", herd.logs()))
        .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
    let out = ToolOutput {
        command,
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
    .ok();
    assert!(
        out.stdout.trim_end().ends_with("all checks passed"),
        "{} did not finish its checks:\n{}",
        out.command,
        out.stdout
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_core_and_apps_crud() {
    let registry = Registry::start().await;
    let hello = registry.image("hello:v1");
    let http_hello = registry.image("http-hello:v1");
    push("hello", &hello).await;
    push("http-hello", &http_hello).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;

    run_script(
        &herd,
        "crud.py",
        &[
            "--namespace",
            "py-crud",
            "--hello-image",
            &hello,
            "--http-hello-image",
            &http_hello,
            "--node",
            "e2e-node",
        ],
    )
    .await;

    // What the script left, as the API sees it.
    let ns = "/api/v1/namespaces/py-crud";
    assert_eq!(s(&herd.get_ok(ns).await, "/status/phase"), "Active");
    assert_eq!(herd.get(&format!("{ns}/configmaps/cfg")).await.0, 404);
    assert_eq!(herd.get(&format!("{ns}/pods/greeter")).await.0, 404);
    assert_eq!(
        herd.get("/apis/apps/v1/namespaces/py-crud/deployments/web")
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_persistent_volume_claims() {
    let registry = Registry::start().await;
    let hello = registry.image("hello:v1");
    push("hello", &hello).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;

    run_script(
        &herd,
        "volumes.py",
        &[
            "--namespace",
            "py-volumes",
            "--hello-image",
            &hello,
            "--node",
            "e2e-node",
        ],
    )
    .await;

    // The claim and its volume went; the volume's directory too.
    assert_eq!(
        herd.get("/api/v1/namespaces/py-volumes/persistentvolumeclaims/data")
            .await
            .0,
        404
    );
    let left: Vec<_> = std::fs::read_dir(herd.data_dir.join("node/volumes"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "local volume directories left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_batch_cronjobs() {
    let herd = Herd::up(HerdOptions::control()).await;

    run_script(
        &herd,
        "cronjob.py",
        &[
            "--namespace",
            "py-cron",
            "--hello-image",
            "127.0.0.1:5000/hello:v1",
        ],
    )
    .await;

    let cronjobs = "/apis/batch/v1/namespaces/py-cron/cronjobs";
    let nightly = herd.get_ok(&format!("{cronjobs}/nightly")).await;
    assert_eq!(nightly["spec"]["suspend"], true, "{nightly}");
    assert_eq!(herd.get(&format!("{cronjobs}/often")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_apps_statefulsets() {
    let herd = Herd::up(HerdOptions::control()).await;

    run_script(
        &herd,
        "statefulset.py",
        &[
            "--namespace",
            "py-sts",
            "--hello-image",
            "127.0.0.1:5000/hello:v1",
        ],
    )
    .await;

    let sets = "/apis/apps/v1/namespaces/py-sts/statefulsets";
    assert_eq!(herd.get(&format!("{sets}/db")).await.0, 404);
    assert_eq!(herd.get("/api/v1/namespaces/py-sts/pods/db-0").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_watch_streams_pod_events() {
    let registry = Registry::start().await;
    let hello = registry.image("hello:v1");
    push("hello", &hello).await;
    let herd = Herd::up(HerdOptions::default()).await;
    herd.wait_node_ready("e2e-node").await;

    run_script(
        &herd,
        "watch_pods.py",
        &["--namespace", "py-watch", "--hello-image", &hello],
    )
    .await;

    let pods = herd.get_ok("/api/v1/namespaces/py-watch/pods").await;
    let mut names: Vec<&str> = pods["items"]
        .as_array()
        .map(|items| items.iter().map(|p| s(p, "/metadata/name")).collect())
        .unwrap_or_default();
    names.sort();
    assert_eq!(names, ["later", "other"], "pods left by the script");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_errors_are_api_exceptions_with_status() {
    let herd = Herd::up(HerdOptions::control()).await;

    run_script(&herd, "errors.py", &["--namespace", "py-errors"]).await;

    let cm = herd
        .get_ok("/api/v1/namespaces/py-errors/configmaps/dup")
        .await;
    assert_eq!(cm["data"]["a"], "2");
    let (status, _) = herd.get("/api/v1/namespaces/py-errors/pods").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_deletes_collections_by_selector() {
    let herd = Herd::up(HerdOptions::control()).await;

    run_script(&herd, "api_gaps.py", &["--namespace", "py-gaps"]).await;

    let ns = "/api/v1/namespaces/py-gaps";
    let names = |list: &serde_json::Value| -> Vec<String> {
        list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| s(i, "/metadata/name").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    // kube-root-ca.crt, the control plane's, is in every namespace: count the test's own.
    assert_eq!(
        names(
            &herd
                .get_ok(&format!("{ns}/configmaps?labelSelector=tier"))
                .await
        ),
        ["c"]
    );
    assert_eq!(names(&herd.get_ok(&format!("{ns}/pods")).await), ["p2"]);
    // A namespaced collection is deleted one namespace at a time.
    let (status, body) = herd
        .send(reqwest::Method::DELETE, "/api/v1/configmaps", None)
        .await;
    assert_eq!(status, 405, "{body}");
    // kube-root-ca.crt, the control plane's, is in every namespace: count the test's own.
    assert_eq!(
        names(
            &herd
                .get_ok(&format!("{ns}/configmaps?labelSelector=tier"))
                .await
        ),
        ["c"]
    );
}
