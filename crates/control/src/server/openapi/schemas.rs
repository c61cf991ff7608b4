//! `components.schemas` of a group-version document: the k8s-openapi (Kubernetes 1.37) JSON schemas of the
//! kinds served there and of everything they reference, named as kube-apiserver names them
//! (`io.k8s.api.core.v1.Pod`), with the Kubernetes extensions kubectl reads:
//! `x-kubernetes-group-version-kind` on top-level kinds (kubectl finds a kind's schema by it) and
//! `x-kubernetes-patch-merge-key`/`x-kubernetes-patch-strategy` on lists (kubectl's `apply` computes its
//! strategic merge patch from them).

use k8s_openapi::api::{
    apps, autoscaling, batch, certificates, coordination, core, discovery, policy, rbac,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

/// Group, version and kind.
pub type Gvk<'a> = (&'a str, &'a str, &'a str);

pub const EXT_GVK: &str = "x-kubernetes-group-version-kind";

/// The schemas of one group-version document.
pub struct Components {
    generator: SchemaGenerator,
    /// Schema name → the GVKs it is the body of (`x-kubernetes-group-version-kind`).
    kinds: Vec<(String, Vec<Value>)>,
    /// Schemas written here rather than generated (lists, kinds k8s-openapi does not know).
    extra: Map<String, Value>,
}

impl Default for Components {
    fn default() -> Self {
        Self::new()
    }
}

impl Components {
    pub fn new() -> Self {
        let settings = SchemaSettings::openapi3().with(|s| s.meta_schema = None);
        Self {
            generator: settings.into_generator(),
            kinds: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Adds the schema of a kind and returns its name. Whether clients can compute a strategic merge patch
    /// from it is [`Components::is_typed`].
    pub fn kind(&mut self, gvk: Gvk<'_>) -> String {
        let name = match typed_schema(gvk) {
            Some(add) => add(&mut self.generator),
            None => {
                let name = schema_name(gvk);
                let metadata = self.generator.subschema_for::<meta::ObjectMeta>();
                self.extra
                    .insert(name.clone(), untyped_kind_schema(gvk, metadata));
                name
            }
        };
        self.mark_kind(&name, gvk);
        name
    }

    /// Adds `<Kind>List` for a kind added with [`Components::kind`] and returns its name.
    pub fn list(&mut self, gvk: Gvk<'_>, item_schema: &str) -> String {
        let (group, version, kind) = gvk;
        let list_kind = format!("{kind}List");
        let name = format!("{item_schema}List");
        let list_meta = self.generator.subschema_for::<meta::ListMeta>();
        self.extra.insert(
            name.clone(),
            json!({
                "description": format!("{list_kind} is a list of {kind} objects."),
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"description": API_VERSION_DOC, "type": "string"},
                    "items": {
                        "description": format!("List of {kind} objects."),
                        "type": "array",
                        "items": {"allOf": [{"$ref": reference(item_schema)}]},
                    },
                    "kind": {"description": KIND_DOC, "type": "string"},
                    "metadata": {
                        "description": "Standard list metadata.",
                        "allOf": [list_meta],
                    },
                },
            }),
        );
        self.mark_kind(&name, (group, version, &list_kind));
        name
    }

    /// Adds a meta type used by the operations (`Status`, `DeleteOptions`, …) and returns its name.
    pub fn meta<T: JsonSchema>(&mut self, gvks: &[Gvk<'_>]) -> String {
        self.generator.subschema_for::<T>();
        let name = T::schema_name().into_owned();
        for gvk in gvks {
            self.mark_kind(&name, *gvk);
        }
        name
    }

    /// Whether k8s-openapi knows the kind, so its schema is complete.
    pub fn is_typed(gvk: Gvk<'_>) -> bool {
        typed_schema(gvk).is_some()
    }

    fn mark_kind(&mut self, name: &str, (group, version, kind): Gvk<'_>) {
        let gvk = json!({"group": group, "kind": kind, "version": version});
        match self.kinds.iter_mut().find(|(n, _)| n == name) {
            Some((_, list)) if !list.contains(&gvk) => list.push(gvk),
            Some(_) => {}
            None => self.kinds.push((name.to_string(), vec![gvk])),
        }
    }

    /// All schemas, with the Kubernetes extensions added.
    pub fn finish(mut self) -> Map<String, Value> {
        let mut schemas = self.generator.take_definitions(true);
        schemas.append(&mut self.extra);
        for (name, gvks) in self.kinds {
            if let Some(schema) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
                schema.insert(EXT_GVK.into(), Value::Array(gvks));
            }
        }
        for (schema, field, merge_key, strategy) in patch_strategies() {
            let Some(property) = schemas
                .get_mut(schema)
                .and_then(|s| s.get_mut("properties"))
                .and_then(|p| p.get_mut(field))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            if let Some(key) = merge_key {
                property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
            property.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        }
        schemas
    }
}

/// Adds the schema of `T` to a generator and returns its name.
type AddSchema = fn(&mut SchemaGenerator) -> String;

/// The k8s-openapi type of a kind, if it has one.
fn typed_schema(gvk: Gvk<'_>) -> Option<AddSchema> {
    fn add<T: JsonSchema>(g: &mut SchemaGenerator) -> String {
        g.subschema_for::<T>();
        T::schema_name().into_owned()
    }
    Some(match gvk {
        ("", "v1", "Binding") => add::<core::v1::Binding>,
        ("", "v1", "ConfigMap") => add::<core::v1::ConfigMap>,
        ("", "v1", "Endpoints") => add::<core::v1::Endpoints>,
        ("", "v1", "Event") => add::<core::v1::Event>,
        ("", "v1", "Namespace") => add::<core::v1::Namespace>,
        ("", "v1", "Node") => add::<core::v1::Node>,
        ("", "v1", "PersistentVolume") => add::<core::v1::PersistentVolume>,
        ("", "v1", "PersistentVolumeClaim") => add::<core::v1::PersistentVolumeClaim>,
        ("", "v1", "Pod") => add::<core::v1::Pod>,
        ("", "v1", "ReplicationController") => add::<core::v1::ReplicationController>,
        ("", "v1", "Secret") => add::<core::v1::Secret>,
        ("", "v1", "Service") => add::<core::v1::Service>,
        ("", "v1", "ServiceAccount") => add::<core::v1::ServiceAccount>,
        ("apps", "v1", "ControllerRevision") => add::<apps::v1::ControllerRevision>,
        ("apps", "v1", "DaemonSet") => add::<apps::v1::DaemonSet>,
        ("apps", "v1", "Deployment") => add::<apps::v1::Deployment>,
        ("apps", "v1", "ReplicaSet") => add::<apps::v1::ReplicaSet>,
        ("apps", "v1", "StatefulSet") => add::<apps::v1::StatefulSet>,
        ("apiregistration.k8s.io", "v1", "APIService") => {
            add::<k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService>
        }
        ("autoscaling", "v1", "Scale") => add::<autoscaling::v1::Scale>,
        ("batch", "v1", "CronJob") => add::<batch::v1::CronJob>,
        ("coordination.k8s.io", "v1", "Lease") => add::<coordination::v1::Lease>,
        ("discovery.k8s.io", "v1", "EndpointSlice") => add::<discovery::v1::EndpointSlice>,
        ("networking.k8s.io", "v1", "IPAddress") => {
            add::<k8s_openapi::api::networking::v1::IPAddress>
        }
        ("certificates.k8s.io", "v1", "CertificateSigningRequest") => {
            add::<certificates::v1::CertificateSigningRequest>
        }
        ("storage.k8s.io", "v1", "StorageClass") => {
            add::<k8s_openapi::api::storage::v1::StorageClass>
        }
        ("policy", "v1", "Eviction") => add::<policy::v1::Eviction>,
        ("policy", "v1", "PodDisruptionBudget") => add::<policy::v1::PodDisruptionBudget>,
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => add::<rbac::v1::ClusterRole>,
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => {
            add::<rbac::v1::ClusterRoleBinding>
        }
        ("rbac.authorization.k8s.io", "v1", "Role") => add::<rbac::v1::Role>,
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => add::<rbac::v1::RoleBinding>,
        _ => return None,
    })
}

/// `#/components/schemas/<name>`.
pub fn reference(name: &str) -> String {
    format!("#/components/schemas/{name}")
}

/// The name kube-apiserver gives a kind's schema: `io.k8s.api.<group's first label, or core>.<v>.<Kind>`.
fn schema_name((group, version, kind): Gvk<'_>) -> String {
    let package = match group.split('.').next() {
        None | Some("") => "core",
        Some(first) => first,
    };
    format!("io.k8s.api.{package}.{version}.{kind}")
}

/// A kind herd serves without a typed schema: any fields are accepted.
fn untyped_kind_schema((_, _, kind): Gvk<'_>, metadata: Schema) -> Value {
    json!({
        "description": format!("{kind} (no detailed schema is published for this kind)."),
        "type": "object",
        "properties": {
            "apiVersion": {"description": API_VERSION_DOC, "type": "string"},
            "kind": {"description": KIND_DOC, "type": "string"},
            "metadata": {"description": "Standard object's metadata.", "allOf": [metadata]},
        },
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

const API_VERSION_DOC: &str =
    "APIVersion defines the versioned schema of this representation of an object.";
const KIND_DOC: &str =
    "Kind is a string value representing the REST resource this object represents.";

/// `schema field merge-key strategy` lines (`-`: no merge key): the `patchMergeKey`/`patchStrategy` struct
/// tags of the Kubernetes API types (k8s.io/api, k8s.io/apimachinery), which k8s-openapi's schemas do not
/// carry. Lines naming schemas a document does not contain are skipped.
const PATCH_STRATEGIES: &str = "\
io.k8s.api.apps.v1.DaemonSetStatus conditions type merge
io.k8s.api.apps.v1.DeploymentSpec strategy - retainKeys
io.k8s.api.apps.v1.DeploymentStatus conditions type merge
io.k8s.api.apps.v1.ReplicaSetStatus conditions type merge
io.k8s.api.apps.v1.StatefulSetStatus conditions type merge
io.k8s.api.core.v1.Container env name merge
io.k8s.api.core.v1.Container ports containerPort merge
io.k8s.api.core.v1.Container volumeDevices devicePath merge
io.k8s.api.core.v1.Container volumeMounts mountPath merge
io.k8s.api.core.v1.ContainerStatus allocatedResourcesStatus name merge
io.k8s.api.core.v1.ContainerStatus volumeMounts mountPath merge
io.k8s.api.core.v1.EphemeralContainer env name merge
io.k8s.api.core.v1.EphemeralContainer ports containerPort merge
io.k8s.api.core.v1.EphemeralContainer volumeDevices devicePath merge
io.k8s.api.core.v1.EphemeralContainer volumeMounts mountPath merge
io.k8s.api.core.v1.NamespaceStatus conditions type merge
io.k8s.api.core.v1.NodeSpec podCIDRs - merge
io.k8s.api.core.v1.NodeStatus addresses type merge
io.k8s.api.core.v1.NodeStatus conditions type merge
io.k8s.api.core.v1.PersistentVolumeClaimStatus conditions type merge
io.k8s.api.core.v1.PodSpec containers name merge
io.k8s.api.core.v1.PodSpec ephemeralContainers name merge
io.k8s.api.core.v1.PodSpec evictionResponders name merge
io.k8s.api.core.v1.PodSpec hostAliases ip merge
io.k8s.api.core.v1.PodSpec imagePullSecrets name merge
io.k8s.api.core.v1.PodSpec initContainers name merge
io.k8s.api.core.v1.PodSpec resourceClaims name merge,retainKeys
io.k8s.api.core.v1.PodSpec schedulingGates name merge
io.k8s.api.core.v1.PodSpec topologySpreadConstraints topologyKey merge
io.k8s.api.core.v1.PodSpec volumes name merge,retainKeys
io.k8s.api.core.v1.PodStatus conditions type merge
io.k8s.api.core.v1.PodStatus hostIPs ip merge
io.k8s.api.core.v1.PodStatus podIPs ip merge
io.k8s.api.core.v1.PodStatus resourceClaimStatuses name merge,retainKeys
io.k8s.api.core.v1.ServiceAccount secrets name merge
io.k8s.api.core.v1.ServiceSpec ports port merge
io.k8s.api.core.v1.ServiceStatus conditions type merge
io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta finalizers - merge
io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta ownerReferences uid merge
";

/// The rows of [`PATCH_STRATEGIES`]: (schema, field, merge key, strategy).
fn patch_strategies() -> impl Iterator<
    Item = (
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
    ),
> {
    PATCH_STRATEGIES.lines().filter_map(|line| {
        let mut cols = line.split_whitespace();
        let (schema, field, key, strategy) =
            (cols.next()?, cols.next()?, cols.next()?, cols.next()?);
        Some((schema, field, (key != "-").then_some(key), strategy))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_components() -> Map<String, Value> {
        let mut c = Components::new();
        let pod = c.kind(("", "v1", "Pod"));
        c.list(("", "v1", "Pod"), &pod);
        c.finish()
    }

    #[test]
    fn pod_schema_carries_its_gvk_and_references_components() {
        let schemas = pod_components();
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod[EXT_GVK],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        assert_eq!(
            pod.pointer("/properties/spec/allOf/0/$ref"),
            Some(&json!("#/components/schemas/io.k8s.api.core.v1.PodSpec"))
        );
        // Every reference resolves inside the document.
        let text = serde_json::to_string(&schemas).unwrap();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling reference {name}");
        }
        assert_eq!(
            schemas["io.k8s.api.core.v1.PodList"][EXT_GVK],
            json!([{"group": "", "kind": "PodList", "version": "v1"}])
        );
    }

    #[test]
    fn lists_carry_patch_merge_keys() {
        let schemas = pod_components();
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        let volumes = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
        let owners = &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["ownerReferences"];
        assert_eq!(owners["x-kubernetes-patch-merge-key"], "uid");
    }

    #[test]
    fn every_patch_strategy_names_a_real_field() {
        // A typo in the table would silently drop an extension; every entry must hit a 1.37 schema.
        let mut c = Components::new();
        for gvk in [
            ("", "v1", "Pod"),
            ("", "v1", "Node"),
            ("", "v1", "Namespace"),
            ("", "v1", "Service"),
            ("", "v1", "ServiceAccount"),
            ("", "v1", "PersistentVolumeClaim"),
            ("apps", "v1", "Deployment"),
            ("apps", "v1", "ReplicaSet"),
            ("apps", "v1", "StatefulSet"),
            ("apps", "v1", "DaemonSet"),
        ] {
            c.kind(gvk);
        }
        let schemas = c.finish();
        assert_eq!(patch_strategies().count(), PATCH_STRATEGIES.lines().count());
        for (schema, field, _, _) in patch_strategies() {
            assert!(
                schemas[schema]["properties"][field]
                    .get("x-kubernetes-patch-strategy")
                    .is_some(),
                "{schema}.{field}"
            );
        }
    }

    #[test]
    fn unknown_kinds_get_an_open_schema() {
        let gvk = ("example.com", "v1", "Widget");
        assert!(!Components::is_typed(gvk));
        let mut c = Components::new();
        let name = c.kind(gvk);
        assert_eq!(name, "io.k8s.api.example.v1.Widget");
        let schemas = c.finish();
        assert_eq!(schemas[&name]["x-kubernetes-preserve-unknown-fields"], true);
        assert_eq!(
            schemas[&name][EXT_GVK],
            json!([{"group": "example.com", "kind": "Widget", "version": "v1"}])
        );
        assert!(Components::is_typed(("", "v1", "Pod")));
    }
}
