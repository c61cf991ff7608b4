//! kube's Node authorizer and NodeRestriction admission: a node (`system:node:NAME` in `system:nodes`) reads
//! only the Secrets, ConfigMaps, volume claims and ServiceAccounts (and their tokens) of pods bound to it, reads
//! and lists only its own pods, and writes only its own Node, its own Lease and its own pods' status.
//!
//! The API server answers the graph questions ([`NodeGraph`]: which pods are bound where, what they
//! reference); everything else here is pure. [`authorize_node`] runs before RBAC, as in kube-apiserver's
//! `--authorization-mode=Node,RBAC`; [`admit_node_write`] refuses what NodeRestriction refuses, with its
//! messages.

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::attributes::{Attributes, Target};
use crate::authorizer::Decision;
use crate::bootstrap::node_rules;
use crate::rules::rule_allows;

/// The namespace node Leases live in.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The annotation that marks a mirror pod (the only kind of pod a node may create).
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What the Node authorizer asks of the cluster's current state (kube's node graph).
pub trait NodeGraph {
    /// Whether pod `namespace/name` exists and is bound to `node`.
    fn pod_on_node(&self, node: &str, namespace: &str, name: &str) -> bool;
    /// Whether a pod bound to `node` references object `namespace/name` of `resource` (`secrets`,
    /// `configmaps`, `persistentvolumeclaims`, `serviceaccounts`): in a volume (projected sources too), an
    /// environment variable or `envFrom`, `imagePullSecrets`, or as its ServiceAccount; for
    /// `persistentvolumes` (cluster-scoped, `namespace` empty): the volume is bound to a claim such a pod
    /// uses, or it is one of the node's local volumes (labelled `volumes.herd.dev/node: <node>`).
    fn node_uses(&self, node: &str, resource: &str, namespace: &str, name: &str) -> bool;
}

/// kube's Node authorizer for one request. Non-node users: no opinion. A node's read of a Secret,
/// ConfigMap, PersistentVolumeClaim or ServiceAccount (token) is allowed when a pod bound to it uses the object
/// (else no opinion, reason `no relationship found between node 'N' and this object`); pods are read one
/// by one when bound to it and listed or watched only with `selected_node` (the request's
/// `spec.nodeName=` field selector) naming it; everything else follows the rules of kube's `system:node`
/// ClusterRole ([`node_rules`]) and, for writes, [`admit_node_write`].
pub fn authorize_node<G: NodeGraph>(
    graph: &G,
    attrs: &Attributes,
    selected_node: Option<&str>,
) -> Decision {
    let no_opinion = |reason: String| Decision::NoOpinion { reason };
    let Some(node) = attrs.user.node_name() else {
        return no_opinion(String::new());
    };
    let Target::Resource(r) = &attrs.target else {
        return by_rules(attrs, &node_rules());
    };
    let allow = || Decision::Allow {
        reason: String::new(),
    };
    let no_relationship = || {
        no_opinion(format!(
            "no relationship found between node '{node}' and this object"
        ))
    };
    let verb = attrs.verb.as_str();
    if !r.api_group.is_empty() {
        return by_rules(attrs, &node_rules());
    }
    match (r.resource.as_str(), r.subresource.as_str()) {
        ("secrets" | "configmaps" | "persistentvolumeclaims", "") => {
            if !matches!(verb, "get" | "list" | "watch") || r.name.is_empty() {
                return no_opinion("can only read individual resources of this type".into());
            }
            if graph.node_uses(node, &r.resource, &r.namespace, &r.name) {
                allow()
            } else {
                no_relationship()
            }
        }
        // herd's local volumes: a node reads the volumes its pods' claims are bound to and the ones it
        // keeps (labelled with it), lists and watches those with the label selector naming it, and
        // removes its cleanup finalizer from them.
        ("persistentvolumes", "") => match verb {
            "get" | "patch" | "update" if !r.name.is_empty() => {
                if graph.node_uses(node, "persistentvolumes", "", &r.name) {
                    allow()
                } else {
                    no_relationship()
                }
            }
            "list" | "watch" if !r.name.is_empty() => {
                if graph.node_uses(node, "persistentvolumes", "", &r.name) {
                    allow()
                } else {
                    no_relationship()
                }
            }
            "list" | "watch" if selected_node == Some(node) => allow(),
            "list" | "watch" => no_opinion(format!(
                "can only list/watch persistentvolumes with the volumes.herd.dev/node label selector set to '{node}'"
            )),
            _ => no_opinion("can only read and update individual persistentvolumes".into()),
        },
        ("serviceaccounts", "token") => {
            if verb != "create" || r.name.is_empty() {
                return no_opinion("can only create tokens for individual service accounts".into());
            }
            if graph.node_uses(node, "serviceaccounts", &r.namespace, &r.name) {
                allow()
            } else {
                no_relationship()
            }
        }
        ("serviceaccounts", "") => {
            if verb != "get" || r.name.is_empty() {
                return no_opinion("can only get individual service accounts".into());
            }
            if graph.node_uses(node, "serviceaccounts", &r.namespace, &r.name) {
                allow()
            } else {
                no_relationship()
            }
        }
        ("pods", "") => match verb {
            "get" if graph.pod_on_node(node, &r.namespace, &r.name) => allow(),
            "get" => no_relationship(),
            "list" | "watch" if selected_node == Some(node) => allow(),
            "list" | "watch" => no_opinion(format!(
                "can only list/watch pods with spec.nodeName field selector set to '{node}'"
            )),
            _ => by_rules(attrs, &node_rules()),
        },
        _ => by_rules(attrs, &node_rules()),
    }
}

fn by_rules(attrs: &Attributes, rules: &[PolicyRule]) -> Decision {
    if rules.iter().any(|rule| rule_allows(attrs, rule)) {
        Decision::Allow {
            reason: String::new(),
        }
    } else {
        Decision::NoOpinion {
            reason: String::new(),
        }
    }
}

/// A write NodeRestriction looks at: the request's resource, subresource, verb, namespace and the object's
/// name (from the URL, or from the body of a create), and for a pod create the pod's mirror annotation and
/// node.
#[derive(Clone, Copy, Debug)]
pub struct NodeWrite<'a> {
    pub resource: &'a str,
    pub subresource: &'a str,
    pub verb: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// For a pod create: whether it carries the mirror annotation, and its `spec.nodeName`.
    pub mirror_pod: Option<(bool, &'a str)>,
}

/// kube's NodeRestriction admission for a write by node `node` (core-group resources only; other users
/// and reads are not its business): `Err` holds the reason of the 403, as kube words it.
///
/// # Errors
/// When a node writes another node, another node's Lease, a pod that is not bound to it, or creates a pod
/// that is not its own mirror pod.
pub fn admit_node_write<G: NodeGraph>(
    graph: &G,
    node: &str,
    write: &NodeWrite<'_>,
) -> Result<(), String> {
    let writes = matches!(write.verb, "create" | "update" | "patch" | "delete");
    match (write.resource, write.subresource) {
        ("nodes", _) if writes && write.name != node => Err(format!(
            "node {node:?} is not allowed to modify node {:?}",
            write.name
        )),
        ("leases", "")
            if writes && (write.namespace != NODE_LEASE_NAMESPACE || write.name != node) =>
        {
            Err("can only access node lease with the same name as the requesting node".into())
        }
        ("pods", "") if write.verb == "create" => match write.mirror_pod {
            Some((true, bound)) if bound == node => Ok(()),
            Some((true, _)) => Err(format!(
                "node {node:?} can only create pods with spec.nodeName set to itself"
            )),
            _ => Err(format!(
                "pod does not have {MIRROR_POD_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
            )),
        },
        ("pods", "")
            if write.verb == "delete" && !graph.pod_on_node(node, write.namespace, write.name) =>
        {
            Err(format!(
                "node {node:?} can only delete pods with spec.nodeName set to itself"
            ))
        }
        ("pods", "status") if writes && !graph.pod_on_node(node, write.namespace, write.name) => {
            Err(format!(
                "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
            ))
        }
        ("pods", "eviction") if !graph.pod_on_node(node, write.namespace, write.name) => Err(
            format!("node {node:?} can only evict pods with spec.nodeName set to itself"),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::UserInfo;

    /// Pod `default/a-pod` on node `a` uses Secret `a-secret`, ConfigMap `a-config` and ServiceAccount
    /// `a-sa`; pod `default/b-pod` on node `b` uses `b-secret`.
    struct Graph;

    impl NodeGraph for Graph {
        fn pod_on_node(&self, node: &str, namespace: &str, name: &str) -> bool {
            namespace == "default" && name == format!("{node}-pod")
        }
        fn node_uses(&self, node: &str, resource: &str, namespace: &str, name: &str) -> bool {
            let used = match resource {
                "secrets" => format!("{node}-secret"),
                "configmaps" => format!("{node}-config"),
                "serviceaccounts" => format!("{node}-sa"),
                _ => return false,
            };
            namespace == "default" && name == used
        }
    }

    fn node_a(verb: &str, resource: &str, name: &str) -> Attributes {
        Attributes::resource(UserInfo::node("a"), verb, "", resource, "default", name)
    }

    #[test]
    fn a_node_reads_only_what_its_own_pods_use() {
        assert!(authorize_node(&Graph, &node_a("get", "secrets", "a-secret"), None).allowed());
        assert!(authorize_node(&Graph, &node_a("watch", "configmaps", "a-config"), None).allowed());
        let other = authorize_node(&Graph, &node_a("get", "secrets", "b-secret"), None);
        assert_eq!(
            other,
            Decision::NoOpinion {
                reason: "no relationship found between node 'a' and this object".into()
            }
        );
        // Listing every Secret is never a node's business.
        assert!(!authorize_node(&Graph, &node_a("list", "secrets", ""), None).allowed());
        assert!(!authorize_node(&Graph, &node_a("update", "secrets", "a-secret"), None).allowed());
        // Tokens only for its pods' ServiceAccounts.
        let token =
            |name: &str| node_a("create", "serviceaccounts", name).with_subresource("token");
        assert!(authorize_node(&Graph, &token("a-sa"), None).allowed());
        assert!(!authorize_node(&Graph, &token("b-sa"), None).allowed());
    }

    #[test]
    fn a_node_sees_its_own_pods_only() {
        assert!(authorize_node(&Graph, &node_a("get", "pods", "a-pod"), None).allowed());
        assert!(!authorize_node(&Graph, &node_a("get", "pods", "b-pod"), None).allowed());
        let mut list = node_a("watch", "pods", "");
        if let Target::Resource(r) = &mut list.target {
            r.namespace.clear();
        }
        assert!(authorize_node(&Graph, &list, Some("a")).allowed());
        assert!(!authorize_node(&Graph, &list, Some("b")).allowed());
        assert!(!authorize_node(&Graph, &list, None).allowed());
        let status = node_a("patch", "pods", "a-pod").with_subresource("status");
        assert!(authorize_node(&Graph, &status, None).allowed());
    }

    #[test]
    fn other_users_are_left_to_rbac() {
        let admin = Attributes::resource(
            UserInfo::new("jane", &["system:authenticated"]),
            "get",
            "",
            "secrets",
            "default",
            "a-secret",
        );
        assert_eq!(
            authorize_node(&Graph, &admin, None),
            Decision::NoOpinion {
                reason: String::new()
            }
        );
    }

    #[test]
    fn node_restriction_keeps_a_node_to_its_own_objects() {
        let write = |resource, subresource, verb, namespace, name| NodeWrite {
            resource,
            subresource,
            verb,
            namespace,
            name,
            mirror_pod: None,
        };
        assert_eq!(
            admit_node_write(&Graph, "a", &write("nodes", "", "patch", "", "b")),
            Err(r#"node "a" is not allowed to modify node "b""#.into())
        );
        assert!(admit_node_write(&Graph, "a", &write("nodes", "status", "patch", "", "a")).is_ok());
        assert!(
            admit_node_write(
                &Graph,
                "a",
                &write("leases", "", "update", "kube-node-lease", "a")
            )
            .is_ok()
        );
        assert!(
            admit_node_write(
                &Graph,
                "a",
                &write("leases", "", "update", "kube-node-lease", "b")
            )
            .is_err()
        );
        assert_eq!(
            admit_node_write(
                &Graph,
                "a",
                &write("pods", "status", "update", "default", "b-pod")
            ),
            Err(
                r#"node "a" can only update pod status for pods with spec.nodeName set to itself"#
                    .into()
            )
        );
        assert!(
            admit_node_write(
                &Graph,
                "a",
                &write("pods", "status", "update", "default", "a-pod")
            )
            .is_ok()
        );
        assert!(
            admit_node_write(
                &Graph,
                "a",
                &write("pods", "", "delete", "default", "b-pod")
            )
            .is_err()
        );
        let create = NodeWrite {
            mirror_pod: Some((false, "a")),
            ..write("pods", "", "create", "default", "x")
        };
        assert_eq!(
            admit_node_write(&Graph, "a", &create),
            Err(
                r#"pod does not have "kubernetes.io/config.mirror" annotation, node "a" can only create mirror pods"#
                    .into()
            )
        );
        // Reads and other resources are not NodeRestriction's business.
        assert!(
            admit_node_write(&Graph, "a", &write("events", "", "create", "default", "")).is_ok()
        );
    }
}
