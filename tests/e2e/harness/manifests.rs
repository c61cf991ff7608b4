//! Object builders for the sample apps, and waits on pods and nodes.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Herd, s, wait_for};

pub const PODS: &str = "/api/v1/namespaces/default/pods";
pub const SERVICES: &str = "/api/v1/namespaces/default/services";
pub const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
pub const REPLICASETS: &str = "/apis/apps/v1/namespaces/default/replicasets";
pub const NODES: &str = "/api/v1/nodes";
pub const NAMESPACES: &str = "/api/v1/namespaces";

/// How long a pod may take to pull, compile and start (2 shared cores, cold wasmtime cache).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The termination grace period of the test pods: short, so a deleted wasi-http pod stops draining soon
/// (a module or command ends at once anyway, as a process does by SIGTERM's default action).
pub const TEST_GRACE_SECONDS: i64 = 1;

/// A `hello` pod: `args`, env `GREETING=hi`, the given restart policy.
pub fn hello_pod(name: &str, image: &str, args: &[&str], restart_policy: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "hello"}},
        "spec": {
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": TEST_GRACE_SECONDS,
            "containers": [{
                "name": "hello",
                "image": image,
                "args": args,
                "env": [{"name": "GREETING", "value": "hi"}],
            }],
        },
    })
}

/// A `spin` pod (restartPolicy Always).
pub fn spin_pod(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "spin"}},
        "spec": {
            "terminationGracePeriodSeconds": TEST_GRACE_SECONDS,
            "containers": [{"name": "spin", "image": image}],
        },
    })
}

/// The pod template of an `http-hello` workload: port 8080, `POD_NAME` from the downward API.
pub fn http_hello_template(app: &str, image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            "containers": [{
                "name": "http-hello",
                "image": image,
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            }],
        },
    })
}

/// A bare `http-hello` pod (restartPolicy Always) labelled `app=<app>`.
pub fn http_hello_pod(name: &str, app: &str, image: &str) -> Value {
    let mut pod = http_hello_template(app, image);
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    pod["metadata"]["name"] = json!(name);
    pod
}

/// A Deployment of `http-hello` selecting `app=<name>`.
pub fn http_hello_deployment(name: &str, image: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": http_hello_template(name, image),
        },
    })
}

/// A ClusterIP Service `port -> targetPort` selecting `app=<app>`.
pub fn service(name: &str, app: &str, port: u16, target_port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": app},
            "ports": [{"name": "http", "port": port, "targetPort": target_port}],
        },
    })
}

/// `status.phase`
pub fn phase(pod: &Value) -> &str {
    s(pod, "/status/phase")
}

/// `status.containerStatuses[0]` (Null if absent).
pub fn container_status(pod: &Value) -> &Value {
    pod.pointer("/status/containerStatuses/0")
        .unwrap_or(&Value::Null)
}

/// A short description of a pod's state, for failure messages.
pub fn pod_summary(pod: &Value) -> String {
    format!(
        "phase={} node={} podIP={} conditions={} containerStatuses={}",
        phase(pod),
        s(pod, "/spec/nodeName"),
        s(pod, "/status/podIP"),
        pod.pointer("/status/conditions").unwrap_or(&Value::Null),
        pod.pointer("/status/containerStatuses")
            .unwrap_or(&Value::Null),
    )
}

/// The condition `type_` of an object's `status.conditions`.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| s(c, "/type") == type_)
}

impl Herd {
    /// The pod `default/<name>`, if it exists.
    pub async fn pod(&self, name: &str) -> Option<Value> {
        match self.get(&format!("{PODS}/{name}")).await {
            (200, pod) => Some(pod),
            (404, _) => None,
            (status, body) => panic!("GET pod {name} -> {status}: {body}"),
        }
    }

    /// Waits until pod `default/<name>` satisfies `pred`; returns it.
    pub async fn wait_pod(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_for(&format!("pod {name} {what}"), timeout, || async {
            match self.pod(name).await {
                Some(pod) if pred(&pod) => Ok(pod),
                Some(pod) => Err(pod_summary(&pod)),
                None => Err("pod does not exist".to_string()),
            }
        })
        .await
    }

    /// Waits until the pod reaches `phase`.
    pub async fn wait_phase(&self, name: &str, wanted: &str) -> Value {
        self.wait_pod(name, &format!("in phase {wanted}"), START_TIMEOUT, |p| {
            phase(p) == wanted
        })
        .await
    }

    /// Waits until the pod is gone (GET answers 404).
    pub async fn wait_pod_gone(&self, name: &str, timeout: Duration) {
        wait_for(&format!("pod {name} to disappear"), timeout, || async {
            match self.pod(name).await {
                None => Ok(()),
                Some(pod) => Err(format!(
                    "deletionTimestamp={} {}",
                    s(&pod, "/metadata/deletionTimestamp"),
                    pod_summary(&pod)
                )),
            }
        })
        .await
    }

    /// Waits until node `name` exists with condition Ready=True; returns it.
    pub async fn wait_node_ready(&self, name: &str) -> Value {
        wait_for(
            &format!("node {name} Ready=True"),
            Duration::from_secs(60),
            || async {
                match self.get(&format!("{NODES}/{name}")).await {
                    (200, node)
                        if condition(&node, "Ready").is_some_and(|c| s(c, "/status") == "True") =>
                    {
                        Ok(node)
                    }
                    (status, body) => Err(format!(
                        "{status}: {}",
                        body.pointer("/status").unwrap_or(&body)
                    )),
                }
            },
        )
        .await
    }

    /// The text of `GET …/pods/<name>/log` (must answer 200).
    pub async fn pod_log(&self, name: &str) -> String {
        let url = self.url(&format!("{PODS}/{name}/log"));
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "GET {url} -> {status}: {text}");
        text
    }
}

impl Herd {
    /// Polls `GET url` until it answers 200 with a body containing `wanted`; returns the body.
    pub async fn wait_http(&self, url: &str, wanted: &str, timeout: Duration) -> String {
        wait_for(
            &format!("GET {url} to answer {wanted:?}"),
            timeout,
            || async {
                match self
                    .http
                    .get(url)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let text = resp.text().await.unwrap_or_default();
                        if status == 200 && text.contains(wanted) {
                            Ok(text)
                        } else {
                            Err(format!("{status}: {text}"))
                        }
                    }
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await
    }
}

impl Herd {
    /// Read-modify-PUT of `path`, re-reading and retrying when a controller wrote in between (409).
    pub async fn update(&self, path: &str, change: impl Fn(&mut Value)) -> Value {
        for _ in 0..5 {
            let mut obj = self.get_ok(path).await;
            change(&mut obj);
            match self.send(reqwest::Method::PUT, path, Some(&obj)).await {
                (200, updated) => return updated,
                (409, body) if body["reason"] == "Conflict" => continue,
                (status, body) => panic!("PUT {path} -> {status}: {body}"),
            }
        }
        panic!("PUT {path} kept conflicting");
    }
}

impl Herd {
    /// GET an absolute URL, which must answer 200 with JSON.
    pub async fn get_ok_abs(&self, url: &str) -> Value {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "GET {url}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"))
    }
}
