//! Private registries (issue 12): Debian's docker-registry with htpasswd basic auth, and with token
//! authentication through a token server (the bearer-token flow of Docker Hub, GHCR and Harbor). `herd push` takes
//! credentials as oras/docker do (and `herd login` saves them as `docker login`); a pod pulls only with the right credentials — its
//! `imagePullSecrets` (made by stock `kubectl create secret docker-registry`), its ServiceAccount's, or
//! the node's `config.json`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::harness::*;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pw";

/// `herd push FILE IMAGE ARGS` with `DOCKER_CONFIG=docker_config` (so no real ~/.docker/config.json
/// is read).
async fn herd_push(image: &str, args: &[&str], docker_config: &Path) -> CliOutput {
    let out = tokio::process::Command::new(HERD)
        .arg("push")
        .arg(sample("http-hello"))
        .arg(image)
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run herd push");
    CliOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `herd login REGISTRY ARGS` with `DOCKER_CONFIG=docker_config`.
async fn herd_login(registry: &str, args: &[&str], docker_config: &Path) -> CliOutput {
    let out = tokio::process::Command::new(HERD)
        .arg("login")
        .arg(registry)
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run herd login");
    CliOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An `http-hello` pod pulling `image` with `policy`, and more spec fields.
fn pod(name: &str, image: &str, policy: &str, spec: Value) -> Value {
    let mut pod = http_hello_pod(name, name, image);
    pod["spec"]["containers"][0]["imagePullPolicy"] = json!(policy);
    pod["spec"]["terminationGracePeriodSeconds"] = json!(TEST_GRACE_SECONDS);
    if let (Some(pod_spec), Some(extra)) = (pod["spec"].as_object_mut(), spec.as_object()) {
        pod_spec.extend(extra.clone());
    }
    pod
}

fn waiting(pod: &Value) -> (String, String) {
    let state = &container_status(pod)["state"]["waiting"];
    (
        s(state, "/reason").to_string(),
        s(state, "/message").to_string(),
    )
}

/// Waits until `name` cannot pull for want of credentials: ErrImagePull or ImagePullBackOff with a
/// message naming the image and the registry's 401.
async fn wait_unauthorized(herd: &Herd, name: &str, image: &str) {
    let pod = herd
        .wait_pod(name, "failing to pull", START_TIMEOUT, |p| {
            let (reason, message) = waiting(p);
            (reason == "ErrImagePull" || reason == "ImagePullBackOff")
                && message.contains("401 Unauthorized")
        })
        .await;
    let (_, message) = waiting(&pod);
    assert!(message.contains(image), "{message}");
    assert!(
        message.to_lowercase().contains("authoriz"),
        "the message says authorization failed: {message}"
    );
    assert_eq!(phase(&pod), "Pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_pulls_from_a_basic_auth_registry_only_with_the_right_credentials() {
    let registry = Registry::start_with_basic_auth(USER, PASSWORD).await;
    let image = registry.image("private/http-hello:v1");
    let no_docker_config = tempfile::tempdir().expect("temp dir");

    // A push without credentials fails with one clear line.
    let anonymous = herd_push(&image, &[], no_docker_config.path()).await;
    assert!(!anonymous.status.success(), "{anonymous:?}");
    let line = anonymous.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {line}");
    assert!(
        line.contains(&format!("cannot push {image}")) && line.contains("401 Unauthorized"),
        "{line}"
    );
    // With a wrong password too.
    let wrong = herd_push(&image, &["-u", USER, "-p", "nope"], no_docker_config.path()).await;
    assert!(
        !wrong.status.success() && wrong.stderr.contains("401 Unauthorized"),
        "{wrong:?}"
    );
    // -u/-p as oras and docker take them.
    let pushed = herd_push(
        &image,
        &["-u", USER, "-p", PASSWORD],
        no_docker_config.path(),
    )
    .await;
    let pushed = pushed.ok();
    assert!(pushed.stdout.trim().starts_with("sha256:"), "{pushed:?}");
    // `herd login` refuses a wrong password, and saves the right one in the docker CLI's config.json
    // (0600), which a push without flags then uses.
    let docker_config = tempfile::tempdir().expect("temp dir");
    let bad_login = herd_login(
        &registry.addr,
        &["-u", USER, "-p", "nope"],
        docker_config.path(),
    )
    .await;
    assert!(
        !bad_login.status.success() && bad_login.stderr.contains("401 Unauthorized"),
        "{bad_login:?}"
    );
    assert!(!docker_config.path().join("config.json").exists());
    let login = herd_login(
        &registry.addr,
        &["-u", USER, "-p", PASSWORD],
        docker_config.path(),
    )
    .await
    .ok();
    assert_eq!(login.stdout.trim(), "Login Succeeded");
    let saved = docker_config.path().join("config.json");
    assert_eq!(
        std::fs::metadata(&saved)
            .expect("config.json")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let auth = herd_oci_fetch::Credential::new(USER, PASSWORD).to_auth();
    let saved: Value = serde_json::from_slice(&std::fs::read(&saved).expect("read")).expect("JSON");
    assert_eq!(saved["auths"][&registry.addr]["auth"], json!(auth));
    let again = herd_push(&image, &[], docker_config.path()).await.ok();
    assert!(again.stdout.trim().starts_with("sha256:"), "{again:?}");

    let herd = Herd::up(HerdOptions::default()).await;

    // No imagePullSecrets: the registry's 401 on the pod.
    herd.create(PODS, &pod("anonymous", &image, "IfNotPresent", json!({})))
        .await;
    wait_unauthorized(&herd, "anonymous", &image).await;

    // A secret with the wrong password: the same.
    let server = format!("--docker-server={}", registry.addr);
    kubectl(
        &herd,
        &[
            "create",
            "secret",
            "docker-registry",
            "wrong",
            &server,
            "--docker-username=alice",
            "--docker-password=nope",
        ],
    )
    .await
    .ok();
    herd.create(
        PODS,
        &pod(
            "wrong-password",
            &image,
            "IfNotPresent",
            json!({"imagePullSecrets": [{"name": "wrong"}]}),
        ),
    )
    .await;
    wait_unauthorized(&herd, "wrong-password", &image).await;

    // The right kubernetes.io/dockerconfigjson secret: the pod runs.
    let password = format!("--docker-password={PASSWORD}");
    kubectl(
        &herd,
        &[
            "create",
            "secret",
            "docker-registry",
            "regcred",
            &server,
            "--docker-username=alice",
            &password,
            "--docker-email=alice@example.com",
        ],
    )
    .await
    .ok();
    herd.create(
        PODS,
        &pod(
            "with-secret",
            &image,
            "IfNotPresent",
            json!({"imagePullSecrets": [{"name": "regcred"}]}),
        ),
    )
    .await;
    herd.wait_phase("with-secret", "Running").await;

    // A ServiceAccount's imagePullSecrets reach its pods (ServiceAccount admission) and pull: with
    // policy Always the registry is asked again, with these credentials.
    kubectl(&herd, &["create", "serviceaccount", "puller"])
        .await
        .ok();
    kubectl(
        &herd,
        &[
            "patch",
            "serviceaccount",
            "puller",
            "--type=merge",
            "-p",
            r#"{"imagePullSecrets":[{"name":"regcred"}]}"#,
        ],
    )
    .await
    .ok();
    let created = herd
        .create(
            PODS,
            &pod(
                "by-account",
                &image,
                "Always",
                json!({"serviceAccountName": "puller"}),
            ),
        )
        .await;
    assert_eq!(
        created["spec"]["imagePullSecrets"],
        json!([{"name": "regcred"}]),
        "copied from the ServiceAccount at create"
    );
    herd.wait_phase("by-account", "Running").await;

    // The image is on the node now, yet a pull that goes to the registry still needs credentials
    // (with IfNotPresent the node's copy would be used, as the kubelet does).
    herd.create(PODS, &pod("always-anonymous", &image, "Always", json!({})))
        .await;
    wait_unauthorized(&herd, "always-anonymous", &image).await;

    // The node's own credentials (config.json in its data dir, read at each pull): the same pod pulls.
    std::fs::write(
        herd.data_dir.join("node/config.json"),
        json!({"auths": {(registry.addr.clone()): {"auth": auth}}}).to_string(),
    )
    .expect("write the node's config.json");
    herd.create(PODS, &pod("node-credentials", &image, "Always", json!({})))
        .await;
    herd.wait_phase("node-credentials", "Running").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_auth_registry_is_pulled_from_and_pushed_to_through_its_token_server() {
    // Distribution's `auth: token:` with a token server of its own, as Harbor, GHCR and Docker Hub
    // work: every request needs a bearer JWT that the token server grants for basic credentials.
    let registry = Registry::start_with_token_auth(USER, PASSWORD).await;
    let image = registry.image("private/http-hello:v1");
    let no_docker_config = tempfile::tempdir().expect("temp dir");

    // Anonymous: the token server grants no access and the registry answers 401.
    let anonymous = herd_push(&image, &[], no_docker_config.path()).await;
    assert!(
        !anonymous.status.success() && anonymous.stderr.contains("401 Unauthorized"),
        "{anonymous:?}"
    );
    // A wrong password: the token server's 401.
    let wrong = herd_push(&image, &["-u", USER, "-p", "nope"], no_docker_config.path()).await;
    assert!(
        !wrong.status.success() && wrong.stderr.contains("401 Unauthorized"),
        "{wrong:?}"
    );
    // -u/-p: traded for a token with push access.
    let pushed = herd_push(
        &image,
        &["-u", USER, "-p", PASSWORD],
        no_docker_config.path(),
    )
    .await
    .ok();
    assert!(pushed.stdout.trim().starts_with("sha256:"), "{pushed:?}");
    // herd login: the token server must grant a token for the credentials.
    let docker_config = tempfile::tempdir().expect("temp dir");
    let bad_login = herd_login(
        &registry.addr,
        &["-u", USER, "-p", "nope"],
        docker_config.path(),
    )
    .await;
    assert!(!bad_login.status.success(), "{bad_login:?}");
    let login = herd_login(
        &registry.addr,
        &["-u", USER, "-p", PASSWORD],
        docker_config.path(),
    )
    .await
    .ok();
    assert_eq!(login.stdout.trim(), "Login Succeeded");

    let herd = Herd::up(HerdOptions::default()).await;
    // Without imagePullSecrets: ErrImagePull with the registry's 401.
    herd.create(PODS, &pod("anonymous", &image, "IfNotPresent", json!({})))
        .await;
    wait_unauthorized(&herd, "anonymous", &image).await;
    // With the right secret the node gets a token from the token server and pulls.
    let server = format!("--docker-server={}", registry.addr);
    let password = format!("--docker-password={PASSWORD}");
    kubectl(
        &herd,
        &[
            "create",
            "secret",
            "docker-registry",
            "regcred",
            &server,
            "--docker-username=alice",
            &password,
        ],
    )
    .await
    .ok();
    herd.create(
        PODS,
        &pod(
            "with-secret",
            &image,
            "IfNotPresent",
            json!({"imagePullSecrets": [{"name": "regcred"}]}),
        ),
    )
    .await;
    herd.wait_phase("with-secret", "Running").await;
}
