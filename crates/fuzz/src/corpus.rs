//! The seeds inputs are mutated from: real valid objects (the protobuf fixtures' bodies and their JSON, the
//! sample apps' manifests, one hand-written object of every served kind), registry manifests, and the
//! vocabulary of keys and strings found in them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Seeds and vocabulary.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    /// Valid Kubernetes objects (JSON form), each naming its `apiVersion` and `kind`.
    pub objects: Vec<Value>,
    /// Real protobuf request bodies (`k8s\0` envelopes).
    pub protobuf: Vec<Vec<u8>>,
    /// OCI manifests, indexes and configs.
    pub manifests: Vec<Value>,
    /// Every object key found in the seeds.
    pub keys: Vec<String>,
    /// Every string value found in the seeds, and the strings decoders find hard.
    pub strings: Vec<String>,
}

/// The repository's root, from this crate's manifest directory.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Corpus {
    /// Loads the seeds from the repository's fixtures and sample apps, plus the built-in ones.
    pub fn load() -> Self {
        let mut c = Corpus::default();
        let root = repo_root();
        let fixtures = root.join("crates/api/tests/fixtures/protobuf");
        for path in sorted_dir(&fixtures) {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            match path.extension().and_then(|e| e.to_str()) {
                Some("pb") => c.protobuf.push(bytes),
                Some("json") => c
                    .objects
                    .extend(serde_json::from_slice::<Value>(&bytes).ok()),
                _ => {}
            }
        }
        for app in sorted_dir(&root.join("sample-apps")) {
            let Ok(text) = std::fs::read_to_string(app.join("manifest.yaml")) else {
                continue;
            };
            for doc in serde_yaml::Deserializer::from_str(&text) {
                if let Ok(v) = <Value as serde::Deserialize>::deserialize(doc)
                    && v.is_object()
                {
                    c.objects.push(v);
                }
            }
        }
        c.objects.extend(builtin_objects());
        c.manifests = builtin_manifests();
        let mut keys = BTreeSet::new();
        let mut strings: BTreeSet<String> =
            INTERESTING_STRINGS.iter().map(|s| s.to_string()).collect();
        for v in c.objects.iter().chain(&c.manifests) {
            collect(v, &mut keys, &mut strings);
        }
        keys.extend(DIRECTIVE_KEYS.iter().map(|k| k.to_string()));
        c.keys = keys.into_iter().collect();
        c.strings = strings.into_iter().collect();
        c
    }
}

fn sorted_dir(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    paths
}

fn collect(v: &Value, keys: &mut BTreeSet<String>, strings: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                keys.insert(k.clone());
                collect(v, keys, strings);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect(v, keys, strings)),
        Value::String(s) if s.len() <= 200 => {
            strings.insert(s.clone());
        }
        _ => {}
    }
}

/// The strategic merge patch directives.
pub const DIRECTIVE_KEYS: &[&str] = &[
    "$patch",
    "$retainKeys",
    "$deleteFromPrimitiveList/finalizers",
    "$deleteFromPrimitiveList/args",
    "$setElementOrder/containers",
    "$setElementOrder/ports",
    "$setElementOrder/env",
    "$setElementOrder/volumes",
    "$setElementOrder/conditions",
    "managedFields",
    "fieldsV1",
    "f:metadata",
    "f:spec",
    "k:{\"name\":\"c\"}",
    "v:\"a\"",
    ".",
    "",
];

/// Strings that decoders and validators find hard.
pub const INTERESTING_STRINGS: &[&str] = &[
    "",
    " ",
    "a",
    "-",
    "_",
    ".",
    "..",
    "/",
    "a/b/c",
    "0",
    "-1",
    "+1",
    "1e309",
    "1e-309",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1.2.3",
    "+.",
    "-.",
    ".5",
    "1.",
    "1Ei",
    "8Ei",
    "9999999999999999999999Ei",
    "1e2147483648",
    "1e-2147483649",
    "1E",
    "1ee",
    "1Ki",
    "1ki",
    "1Mk",
    "1ii",
    "250m",
    "1.5",
    "0.001m",
    "100n",
    "1u",
    "5Ti",
    "2Pe",
    "0x10",
    "1_000",
    "%",
    "25%",
    "-5%",
    "101%",
    "1.5%",
    "%%",
    "\u{0}",
    "\u{7f}",
    "ü",
    "🦀",
    "\u{202e}",
    "\\",
    "\"",
    "'",
    "a\nb",
    "$patch",
    "replace",
    "delete",
    "merge",
    "retainKeys",
    "Always",
    "IfNotPresent",
    "Never",
    "RollingUpdate",
    "Recreate",
    "OnDelete",
    "TCP",
    "UDP",
    "SCTP",
    "ClusterIP",
    "NodePort",
    "LoadBalancer",
    "ExternalName",
    "None",
    "Orphan",
    "Foreground",
    "Background",
    "127.0.0.1",
    "::1",
    "256.0.0.1",
    "10.0.0.0/8",
    "http://x",
    "sha256:",
    "sha256:0000",
    "a=b",
    "a!=b",
    "a in (b,c)",
    "a notin ()",
    "!a",
    "a,",
    ",",
    "()",
    "(",
    "metadata.name=a",
    "spec.nodeName=",
    "status.phase!=Running",
    "v1",
    "apps/v1",
    "/v1",
    "v1/",
    "a/b/c/d",
    "2024-13-45T99:99:99Z",
    "2024-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "Exists",
    "DoesNotExist",
    "In",
    "NotIn",
    "Gt",
    "Lt",
    "NoSchedule",
    "NoExecute",
    "Equal",
];

/// One valid object of every kind herd serves (fields kube-apiserver requires, a few optional ones).
pub fn builtin_objects() -> Vec<Value> {
    let container = json!({"name": "c", "image": "127.0.0.1:5000/hello:v1", "args": ["a", "b"],
        "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"containerPort": 8080, "protocol": "TCP", "name": "http"}],
        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}},
        "volumeMounts": [{"name": "v", "mountPath": "/data"}]});
    let pod_spec = json!({"containers": [container], "restartPolicy": "Always",
        "volumes": [{"name": "v", "emptyDir": {}}], "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}}});
    let template = json!({"metadata": {"labels": {"app": "a"}}, "spec": pod_spec});
    let selector = json!({"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]});
    let meta = |name: &str| {
        json!({"name": name, "namespace": "default", "labels": {"app": "a"},
        "annotations": {"note": "x"}, "finalizers": ["example.com/f"]})
    };
    vec![
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("p"), "spec": pod_spec}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("s"), "spec": {"selector": {"app": "a"},
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "name": "http"}], "type": "ClusterIP"}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("d"), "spec": {"replicas": 3,
            "selector": selector, "template": template, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}}, "minReadySeconds": 5}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta("rs"), "spec": {"replicas": 2,
            "selector": selector, "template": template}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("ds"), "spec": {
            "selector": selector, "template": template, "updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "10%", "maxSurge": 0}}}}),
        json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": meta("rc"), "spec": {"replicas": 1,
            "selector": {"app": "a"}, "template": template}}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("j"), "spec": {"completions": 3,
            "parallelism": 2, "backoffLimit": 4, "template": {"spec": {"containers": [{"name": "c", "image": "i"}],
            "restartPolicy": "Never"}}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("cm"), "data": {"k": "v"},
            "binaryData": {"b": "AAE="}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("sec"), "type": "Opaque",
            "data": {"k": "dg=="}, "stringData": {"s": "x"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns", "labels": {"a": "b"}}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("sa"), "automountServiceAccountToken": false,
            "imagePullSecrets": [{"name": "pull"}]}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "labels": {"kubernetes.io/hostname": "n"}},
            "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}], "podCIDR": "127.1.0.0/24"},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}, "allocatable": {"cpu": "4"},
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "conditions": [{"type": "Ready", "status": "True"}]}}),
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta("s"), "subsets": [{"addresses": [{"ip": "127.1.0.2"}],
            "ports": [{"port": 8080, "protocol": "TCP"}]}]}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta("s-x"), "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.1.0.2"], "conditions": {"ready": true}}], "ports": [{"port": 8080}]}),
        json!({"apiVersion": "v1", "kind": "Event", "metadata": meta("e"), "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "Started", "message": "m", "type": "Normal", "count": 1}),
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta("l"), "spec": {
            "holderIdentity": "n", "leaseDurationSeconds": 40, "renewTime": "2024-01-01T00:00:00.000000Z"}}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta("pdb"), "spec": {
            "minAvailable": "50%", "selector": selector}}),
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1.example.com"},
            "spec": {"group": "example.com", "version": "v1", "groupPriorityMinimum": 100, "versionPriority": 10,
            "service": {"namespace": "default", "name": "s", "port": 443}}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta("pvc"), "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "standard", "selector": selector, "volumeMode": "Filesystem"}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "local": {"path": "/data/pv"},
            "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "standard",
            "claimRef": {"namespace": "default", "name": "pvc"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n"]}]}]}}}}),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "sc",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "herd.dev/local", "reclaimPolicy": "Retain",
            "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": false}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta("r"), "rules": [
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"], "resourceNames": ["p"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "system:c"},
            "rules": [{"nonResourceURLs": ["/healthz", "/metrics/*"], "verbs": ["get"]}],
            "aggregationRule": {"clusterRoleSelectors": [selector]}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta("rb"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "default"}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "crb"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:c"},
            "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"}]}),
    ]
}

/// Registry documents: a Wasm artifact's manifest and config, an image index, a Docker v2 manifest.
pub fn builtin_manifests() -> Vec<Value> {
    let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    vec![
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": digest, "size": 2},
            "layers": [{"mediaType": "application/wasm", "digest": digest, "size": 8,
                "annotations": {"org.opencontainers.image.title": "app.wasm"}}],
            "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}),
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 500,
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 400,
             "platform": {"architecture": "wasm", "os": "wasip1", "os.version": "1", "variant": "v1",
             "os.features": ["a"], "features": ["b"]}}]}),
        json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest, "size": 7023},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": digest,
                "size": 32654, "urls": ["http://x"]}]}),
        json!({"created": "2024-01-01T00:00:00Z", "architecture": "wasm", "os": "wasip2",
            "layerDigests": [digest], "rootfs": {"type": "layers", "diff_ids": [digest]},
            "config": {"Env": ["A=1"], "Entrypoint": ["/app.wasm"], "ExposedPorts": {"80/tcp": {}}},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "herd"}]}),
    ]
}
