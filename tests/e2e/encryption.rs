//! Secrets encrypted at rest (issue 12): `herd up --encryption-provider-config FILE` stores a Secret made
//! with stock kubectl so that no file of the data dir holds its value, and reads it back after a restart;
//! a bad configuration stops `herd up` with one line naming the file.

use crate::harness::*;

/// Whether any file under `dir` contains `needle`: the paths that do.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_up_encrypts_secrets_at_rest_and_reads_them_after_a_restart() {
    let value = "e2e-plaintext-never-on-disk-31337";
    // Its base64, as the Secret's data holds it.
    let encoded = "ZTJlLXBsYWludGV4dC1uZXZlci1vbi1kaXNrLTMxMzM3";
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("encryption.yaml");
    std::fs::write(
        &config,
        "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
      - identity: {}
",
    )
    .unwrap();
    let mut herd = Herd::up(HerdOptions {
        extra_args: vec![
            "--encryption-provider-config".into(),
            config.display().to_string(),
        ],
        ..HerdOptions::default()
    })
    .await;

    kubectl(
        &herd,
        &[
            "create",
            "secret",
            "generic",
            "db",
            &format!("--from-literal=password={value}"),
        ],
    )
    .await
    .ok();
    let read = kubectl(
        &herd,
        &["get", "secret", "db", "-o", "jsonpath={.data.password}"],
    )
    .await
    .ok();
    assert_eq!(read.stdout, encoded);

    herd.stop();
    assert_eq!(
        files_containing(&herd.data_dir, value),
        Vec::<String>::new()
    );
    assert_eq!(
        files_containing(&herd.data_dir, encoded),
        Vec::<String>::new()
    );
    assert!(
        !files_containing(&herd.data_dir, "k8s:enc:aescbc:v1:key1:").is_empty(),
        "the store holds kube's aescbc format"
    );

    // A bad configuration stops `herd up` before anything starts, with one line naming the file.
    let bad = config_dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: c2hvcnQ=
",
    )
    .unwrap();
    let out = tokio::process::Command::new(HERD)
        .args(["up", "--data-dir"])
        .arg(&herd.data_dir)
        .args(["--listen", "127.0.0.1:0", "--no-registry"])
        .args(["--service-cidr", &herd.cidrs.service.to_string()])
        .args(["--cluster-cidr", &herd.cidrs.cluster.to_string()])
        .args(["--node-cidr-mask-size", "24"])
        .arg("--encryption-provider-config")
        .arg(&bad)
        .output()
        .await
        .expect("run herd");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = format!(
        "encryption provider config {}: resources[0].providers[0].aescbc.keys[0].secret: secret is not of the expected length, got 5, expected one of [16, 24, 32]",
        bad.display()
    );
    assert!(stderr.contains(&line), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");

    herd.start().await;
    let read = kubectl(
        &herd,
        &["get", "secret", "db", "-o", "jsonpath={.data.password}"],
    )
    .await
    .ok();
    assert_eq!(read.stdout, encoded);
}
