//! What node affinity means for a pod: its `nodeSelector` and required node affinity. Label selectors and
//! node selector terms themselves are evaluated by `herd_api::selector`, the one matcher.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

pub(crate) use herd_api::selector::{
    label_selector_matches, node_selector_term_matches as term_matches,
};

/// The pod's nodeSelector and required node affinity (terms ORed) both hold for the node.
pub(crate) fn node_affinity_matches(
    pod: &Pod,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok
        && required.is_none_or(|r| {
            r.node_selector_terms
                .iter()
                .any(|t| term_matches(t, name, labels))
        })
}
