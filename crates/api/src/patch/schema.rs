//! How each field of the kinds herd serves is patched and applied: the `patchStrategy`/`patchMergeKey`
//! tags (strategic merge patch) and the `listType`/`listMapKey`/`structType=atomic` markers (server-side
//! apply) that k8s.io/api declares on its Go types.
//!
//! Fields are addressed by their *schema path*: the field names from the object root joined with `.`,
//! list items adding nothing (`spec.template.spec.containers.env`). Only fields that differ from the
//! defaults are listed: objects merge field by field, lists are replaced whole (atomic).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde_json::{Map, Value};

/// How a strategic merge patch treats a field (the `patchStrategy` tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchStrategy {
    /// No tag: objects merge key by key, lists are replaced.
    Default,
    /// `patchStrategy:"merge"`: lists merge by their merge key, or as a set of primitives.
    Merge,
    /// `patchStrategy:"replace"`: the patch value replaces the field.
    Replace,
}

/// The patch metadata of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchMeta<'a> {
    pub strategy: PatchStrategy,
    /// `patchMergeKey`: the field identifying list items (`name` for containers).
    pub merge_key: Option<&'a str>,
}

impl PatchMeta<'_> {
    pub const DEFAULT: PatchMeta<'static> = PatchMeta {
        strategy: PatchStrategy::Default,
        merge_key: None,
    };
}

/// Where strategic merge patch finds the patch metadata of a field.
pub trait MergeSchema {
    /// The metadata of the field at `path`: field names from the object root, list items omitted.
    fn patch_meta(&self, path: &[String]) -> PatchMeta<'_>;
}

/// How server-side apply identifies the items of a list (`+listType`, `x-kubernetes-list-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType<'a> {
    /// Replaced and owned as a whole.
    Atomic,
    /// A set of scalars, each owned on its own (`v:<value>`).
    Set,
    /// Items keyed by these fields (`k:{...}`).
    Map(&'a [ListKey]),
}

/// One key field of a map-type list, with the default the API server fills in when it is omitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListKey {
    pub name: Cow<'static, str>,
    pub default: Option<Cow<'static, str>>,
}

/// The metadata of one list field, for both patch flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListField {
    pub strategy: PatchStrategy,
    pub merge_key: Option<&'static str>,
    pub list_type: ListType<'static>,
}

/// The patch and apply schema of one kind.
#[derive(Debug)]
pub struct KindSchema {
    kind: Cow<'static, str>,
    api_version: Cow<'static, str>,
    lists: HashMap<String, ListField>,
    /// Lists of a custom resource (`x-kubernetes-list-type` `set` or `map`), by schema path; a `*`
    /// segment stands for any key of a map (`additionalProperties`).
    custom_lists: Vec<(String, Vec<ListKey>, bool)>,
    /// Objects owned and replaced as a whole (`+structType=atomic`, `+mapType=atomic`).
    atomic_objects: HashSet<String>,
    /// A custom resource's `x-kubernetes-map-type: atomic` objects, by schema path (`*` as above).
    custom_atomic: Vec<String>,
    /// Fields present in the zero value of the Go type: non-pointer structs (`spec`, as `{}`) and
    /// fields without `omitempty` (`containers`, as `null`).
    skeleton: Vec<(String, Value)>,
}

impl KindSchema {
    /// The schema of a kind herd serves (`Pod`, `Deployment`, …, and `Scale`), or `None`.
    pub fn for_kind(kind: &str) -> Option<&'static KindSchema> {
        static SCHEMAS: OnceLock<HashMap<&'static str, KindSchema>> = OnceLock::new();
        SCHEMAS
            .get_or_init(|| {
                KINDS
                    .iter()
                    .map(|(kind, api_version)| (*kind, build(kind, api_version)))
                    .collect()
            })
            .get(kind)
    }

    /// The schema of `kind`, or one that knows only object metadata for kinds without a schema.
    pub(crate) fn for_kind_or_generic(kind: &str) -> &'static KindSchema {
        static GENERIC: OnceLock<KindSchema> = OnceLock::new();
        Self::for_kind(kind).unwrap_or_else(|| GENERIC.get_or_init(|| build("", "")))
    }

    /// The schema of one version of a custom resource: its `set` lists (`sets`), its `map` lists with
    /// their key fields (`maps`) and its atomic objects, by schema path (field names from the root, list
    /// items adding nothing, `*` for any key of a map). Every other list is atomic, every other object
    /// granular, as kube-apiserver derives them from the CRD's structural schema.
    pub fn custom(
        kind: String,
        api_version: String,
        sets: Vec<String>,
        maps: Vec<(String, Vec<String>)>,
        atomic_objects: Vec<String>,
    ) -> Self {
        let mut schema = build("", "");
        schema.kind = Cow::Owned(kind);
        schema.api_version = Cow::Owned(api_version);
        schema.custom_lists = sets
            .into_iter()
            .map(|p| (p, Vec::new(), true))
            .chain(maps.into_iter().map(|(p, keys)| {
                let keys = keys
                    .into_iter()
                    .map(|k| ListKey {
                        name: Cow::Owned(k),
                        default: None,
                    })
                    .collect();
                (p, keys, false)
            }))
            .collect();
        schema.custom_atomic = atomic_objects;
        schema
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// `v1`, `apps/v1`, …: the version herd serves the kind at.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    pub fn list_type(&self, path: &str) -> ListType<'_> {
        if let Some(l) = self.lists.get(path) {
            return l.list_type;
        }
        self.custom_lists
            .iter()
            .find(|(p, _, _)| path_matches(p, path))
            .map_or(ListType::Atomic, |(_, keys, set)| {
                if *set {
                    ListType::Set
                } else {
                    ListType::Map(keys)
                }
            })
    }

    pub fn is_atomic_object(&self, path: &str) -> bool {
        self.atomic_objects.contains(path)
            || self.custom_atomic.iter().any(|p| path_matches(p, path))
    }

    pub(crate) fn skeleton(&self) -> &[(String, Value)] {
        &self.skeleton
    }
}

/// Whether a schema path with `*` segments (any key of a map, dots included) matches `path`.
fn path_matches(pattern: &str, path: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == path;
    }
    match pattern.split_once('*') {
        Some((prefix, rest)) => {
            let Some(tail) = path.strip_prefix(prefix) else {
                return false;
            };
            let rest = rest.strip_prefix('.');
            match rest {
                None => !tail.is_empty(),
                Some(rest) => tail
                    .char_indices()
                    .any(|(i, c)| c == '.' && i > 0 && path_matches(rest, &tail[i + 1..])),
            }
        }
        None => false,
    }
}

impl MergeSchema for KindSchema {
    fn patch_meta(&self, path: &[String]) -> PatchMeta<'_> {
        match self.lists.get(&path.join(".")) {
            Some(l) => PatchMeta {
                strategy: l.strategy,
                merge_key: l.merge_key,
            },
            None => PatchMeta::DEFAULT,
        }
    }
}

/// Kinds with their served version. `Scale` is the autoscaling/v1 subresource object.
const KINDS: &[(&str, &str)] = &[
    ("Namespace", "v1"),
    ("Node", "v1"),
    ("Pod", "v1"),
    ("Service", "v1"),
    ("Endpoints", "v1"),
    ("ConfigMap", "v1"),
    ("Secret", "v1"),
    ("Event", "v1"),
    ("Deployment", "apps/v1"),
    ("ReplicaSet", "apps/v1"),
    ("StatefulSet", "apps/v1"),
    ("CronJob", "batch/v1"),
    ("Lease", "coordination.k8s.io/v1"),
    ("Role", "rbac.authorization.k8s.io/v1"),
    ("ClusterRole", "rbac.authorization.k8s.io/v1"),
    ("RoleBinding", "rbac.authorization.k8s.io/v1"),
    ("ClusterRoleBinding", "rbac.authorization.k8s.io/v1"),
    ("Scale", "autoscaling/v1"),
];

const NAME: &[ListKey] = &[key("name")];
const TYPE: &[ListKey] = &[key("type")];
const IP: &[ListKey] = &[key("ip")];
const UID: &[ListKey] = &[key("uid")];
const MOUNT_PATH: &[ListKey] = &[key("mountPath")];
const DEVICE_PATH: &[ListKey] = &[key("devicePath")];
const CONTAINER_PORT: &[ListKey] = &[
    key("containerPort"),
    ListKey {
        name: Cow::Borrowed("protocol"),
        default: Some(Cow::Borrowed("TCP")),
    },
];
const SERVICE_PORT: &[ListKey] = &[
    key("port"),
    ListKey {
        name: Cow::Borrowed("protocol"),
        default: Some(Cow::Borrowed("TCP")),
    },
];
const TOPOLOGY: &[ListKey] = &[key("topologyKey"), key("whenUnsatisfiable")];

const fn key(name: &'static str) -> ListKey {
    ListKey {
        name: Cow::Borrowed(name),
        default: None,
    }
}

/// A list merged by `merge_key` in patches and keyed by `keys` in apply.
const fn keyed(merge_key: &'static str, keys: &'static [ListKey]) -> ListField {
    ListField {
        strategy: PatchStrategy::Merge,
        merge_key: Some(merge_key),
        list_type: ListType::Map(keys),
    }
}

/// A list replaced by patches but keyed in apply (`listType=map` without `patchStrategy`).
const fn apply_keyed(keys: &'static [ListKey]) -> ListField {
    ListField {
        strategy: PatchStrategy::Default,
        merge_key: None,
        list_type: ListType::Map(keys),
    }
}

/// A list of scalars merged as a set by both.
const SET: ListField = ListField {
    strategy: PatchStrategy::Merge,
    merge_key: None,
    list_type: ListType::Set,
};

/// `conditions` keyed by `type`, as every status declares them.
const CONDITIONS: ListField = keyed("type", TYPE);

struct Builder {
    schema: KindSchema,
}

impl Builder {
    fn list(&mut self, path: &str, field: ListField) {
        self.schema.lists.insert(path.to_string(), field);
    }

    fn atomic(&mut self, path: &str) {
        self.schema.atomic_objects.insert(path.to_string());
    }

    fn skeleton(&mut self, paths: &[&str]) {
        let empty = || Value::Object(Map::new());
        self.schema
            .skeleton
            .extend(paths.iter().map(|p| (p.to_string(), empty())));
    }

    fn pod_spec(&mut self, at: &str) {
        for containers in ["containers", "initContainers", "ephemeralContainers"] {
            let c = format!("{at}.{containers}");
            self.list(&c, keyed("name", NAME));
            self.list(
                &format!("{c}.ports"),
                keyed("containerPort", CONTAINER_PORT),
            );
            self.list(&format!("{c}.env"), keyed("name", NAME));
            self.list(&format!("{c}.volumeMounts"), keyed("mountPath", MOUNT_PATH));
            self.list(
                &format!("{c}.volumeDevices"),
                keyed("devicePath", DEVICE_PATH),
            );
            self.list(&format!("{c}.resources.claims"), apply_keyed(NAME));
            for selector in [
                "fieldRef",
                "resourceFieldRef",
                "configMapKeyRef",
                "secretKeyRef",
                "fileKeyRef",
            ] {
                self.atomic(&format!("{c}.env.valueFrom.{selector}"));
            }
            self.skeleton(&[&format!("{c}.resources")]);
        }
        // `containers` has no `omitempty`: the zero PodSpec carries `"containers": null`.
        self.schema
            .skeleton
            .push((format!("{at}.containers"), Value::Null));
        self.list(&format!("{at}.volumes"), keyed("name", NAME));
        self.list(&format!("{at}.imagePullSecrets"), keyed("name", NAME));
        self.atomic(&format!("{at}.imagePullSecrets"));
        self.list(&format!("{at}.hostAliases"), keyed("ip", IP));
        self.list(
            &format!("{at}.topologySpreadConstraints"),
            keyed("topologyKey", TOPOLOGY),
        );
        self.atomic(&format!("{at}.topologySpreadConstraints.labelSelector"));
        self.list(&format!("{at}.schedulingGates"), keyed("name", NAME));
        self.list(&format!("{at}.resourceClaims"), keyed("name", NAME));
        self.atomic(&format!("{at}.nodeSelector"));
        self.atomic(&format!(
            "{at}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ));
    }

    fn pod_template(&mut self, at: &str) {
        self.skeleton(&[at, &format!("{at}.metadata"), &format!("{at}.spec")]);
        self.pod_spec(&format!("{at}.spec"));
    }
}

fn build(kind: &'static str, api_version: &'static str) -> KindSchema {
    let mut b = Builder {
        schema: KindSchema {
            kind: Cow::Borrowed(kind),
            api_version: Cow::Borrowed(api_version),
            lists: HashMap::new(),
            custom_lists: Vec::new(),
            atomic_objects: HashSet::new(),
            custom_atomic: Vec::new(),
            skeleton: vec![("metadata".into(), Value::Object(Map::new()))],
        },
    };
    b.list("metadata.ownerReferences", keyed("uid", UID));
    b.atomic("metadata.ownerReferences");
    b.list("metadata.finalizers", SET);
    match kind {
        "Pod" => {
            b.skeleton(&["spec", "status"]);
            b.pod_spec("spec");
            b.list("status.conditions", CONDITIONS);
            b.list("status.podIPs", keyed("ip", IP));
            b.list(
                "status.hostIPs",
                ListField {
                    strategy: PatchStrategy::Merge,
                    merge_key: Some("ip"),
                    list_type: ListType::Atomic,
                },
            );
            b.list("status.resourceClaimStatuses", keyed("name", NAME));
        }
        "Deployment" | "ReplicaSet" => {
            b.skeleton(&["spec", "status"]);
            if kind == "Deployment" {
                b.skeleton(&["spec.strategy"]);
            }
            b.atomic("spec.selector");
            b.pod_template("spec.template");
            b.list("status.conditions", CONDITIONS);
        }
        // The Job template holds a pod template; `status.active` is an atomic list (the default).
        "CronJob" => {
            b.skeleton(&[
                "spec",
                "status",
                "spec.jobTemplate",
                "spec.jobTemplate.spec",
            ]);
            b.atomic("spec.jobTemplate.spec.selector");
            b.pod_template("spec.jobTemplate.spec.template");
        }
        // `updateStrategy` is a struct, not a pointer; the claim templates an atomic list (the default).
        "StatefulSet" => {
            b.skeleton(&["spec", "status", "spec.updateStrategy"]);
            b.atomic("spec.selector");
            b.pod_template("spec.template");
            b.list("status.conditions", CONDITIONS);
        }
        "Service" => {
            b.skeleton(&["spec", "status", "status.loadBalancer"]);
            b.list("spec.ports", keyed("port", SERVICE_PORT));
            b.atomic("spec.selector");
            b.list("status.conditions", CONDITIONS);
        }
        "Node" => {
            b.skeleton(&[
                "spec",
                "status",
                "status.daemonEndpoints",
                "status.daemonEndpoints.kubeletEndpoint",
                "status.nodeInfo",
            ]);
            b.list("spec.podCIDRs", SET);
            b.list("status.conditions", CONDITIONS);
            b.list("status.addresses", keyed("type", TYPE));
        }
        "Namespace" => {
            b.skeleton(&["spec", "status"]);
            b.list("status.conditions", CONDITIONS);
        }
        "Event" => {
            b.skeleton(&["involvedObject", "source"]);
            b.atomic("involvedObject");
            b.atomic("related");
        }
        "Lease" | "Scale" => b.skeleton(&["spec"]),
        // A Role's rules and a ClusterRole's aggregation selectors are atomic lists (the default); a
        // binding's roleRef is an atomic struct (`+structType=atomic`), its subjects an atomic list.
        "RoleBinding" | "ClusterRoleBinding" => {
            b.skeleton(&["roleRef"]);
            b.atomic("roleRef");
        }
        _ => {}
    }
    b.schema
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: &str, path: &str) -> PatchMeta<'static> {
        let schema = KindSchema::for_kind(kind).expect("known kind");
        let path: Vec<String> = path.split('.').map(String::from).collect();
        schema.patch_meta(&path)
    }

    #[test]
    fn merge_keys_follow_the_go_struct_tags() {
        let merge = |key| PatchMeta {
            strategy: PatchStrategy::Merge,
            merge_key: key,
        };
        assert_eq!(meta("Pod", "spec.containers"), merge(Some("name")));
        assert_eq!(meta("Pod", "spec.containers.env"), merge(Some("name")));
        assert_eq!(
            meta("Pod", "spec.initContainers.volumeMounts"),
            merge(Some("mountPath"))
        );
        assert_eq!(
            meta("Deployment", "spec.template.spec.containers.ports"),
            merge(Some("containerPort"))
        );
        assert_eq!(
            meta("ReplicaSet", "spec.template.spec.volumes"),
            merge(Some("name"))
        );
        assert_eq!(
            meta("CronJob", "spec.jobTemplate.spec.template.spec.containers"),
            merge(Some("name"))
        );
        assert_eq!(
            meta("StatefulSet", "spec.template.spec.containers"),
            merge(Some("name"))
        );
        assert_eq!(meta("Service", "spec.ports"), merge(Some("port")));
        assert_eq!(meta("Node", "status.addresses"), merge(Some("type")));
        assert_eq!(meta("Node", "spec.podCIDRs"), merge(None));
        assert_eq!(meta("ConfigMap", "metadata.finalizers"), merge(None));
        assert_eq!(
            meta("Lease", "metadata.ownerReferences"),
            merge(Some("uid"))
        );
        assert_eq!(meta("Namespace", "status.conditions"), merge(Some("type")));
        // No patchStrategy: replaced.
        assert_eq!(meta("Pod", "spec.tolerations"), PatchMeta::DEFAULT);
        assert_eq!(meta("Node", "spec.taints"), PatchMeta::DEFAULT);
        assert_eq!(meta("Pod", "spec.containers.args"), PatchMeta::DEFAULT);
        assert_eq!(meta("Endpoints", "subsets"), PatchMeta::DEFAULT);
    }

    #[test]
    fn apply_list_types_follow_the_list_markers() {
        let pod = KindSchema::for_kind("Pod").expect("Pod");
        assert_eq!(
            pod.list_type("spec.containers.ports"),
            ListType::Map(CONTAINER_PORT)
        );
        assert_eq!(pod.list_type("status.hostIPs"), ListType::Atomic);
        assert_eq!(pod.list_type("spec.tolerations"), ListType::Atomic);
        assert_eq!(pod.list_type("metadata.finalizers"), ListType::Set);
        assert!(pod.is_atomic_object("spec.nodeSelector"));
        assert!(
            KindSchema::for_kind("Deployment").is_some_and(|d| d.is_atomic_object("spec.selector"))
        );
        assert!(KindSchema::for_kind("CustomThing").is_none());
    }
}
