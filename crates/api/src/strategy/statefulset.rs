//! The apps kinds of a StatefulSet's world, as kube-apiserver's `statefulset` and `controllerrevision`
//! strategies: a StatefulSet's defaults (`SetDefaults_StatefulSet` of a 1.35+ apiserver, where
//! MaxUnavailableStatefulSet is on) and `ValidateStatefulSet`/`ValidateStatefulSetUpdate` word for word; a
//! ControllerRevision's mandatory, immutable `data`.

use k8s_openapi::api::apps::v1::{
    ControllerRevision, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Kind;
use crate::admission as rules;
use crate::selector::LabelSelector;
use crate::validation::{self, Cause};

const ORDERED_READY: &str = "OrderedReady";
const PARALLEL: &str = "Parallel";
const ROLLING_UPDATE: &str = "RollingUpdate";
const ON_DELETE: &str = "OnDelete";
const RETENTION_POLICIES: &[&str] = &["Retain", "Delete"];

impl Kind for StatefulSet {
    const RESETS_STATUS_ON_CREATE: bool = true;
    const POD_TEMPLATE: Option<&'static str> = Some("/spec/template");

    fn default(&mut self) {
        default_spec(&mut self.spec);
    }

    fn validate(&self, causes: &mut Vec<Cause>) {
        validate_spec(&self.spec, causes);
    }

    /// kube's `ValidateStatefulSetUpdate`: only the fields a rollout or a scale changes may change.
    fn validate_update(&mut self, old: &Self, causes: &mut Vec<Cause>) {
        let before = &old.spec;
        let mut comparable = self.spec.clone();
        comparable.replicas = before.replicas;
        comparable.ordinals.clone_from(&before.ordinals);
        comparable.template.clone_from(&before.template);
        comparable
            .update_strategy
            .clone_from(&before.update_strategy);
        comparable.revision_history_limit = before.revision_history_limit;
        comparable
            .persistent_volume_claim_retention_policy
            .clone_from(&before.persistent_volume_claim_retention_policy);
        comparable.min_ready_seconds = before.min_ready_seconds;
        if &comparable != before {
            causes.push(Cause::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

/// kube's `SetDefaults_StatefulSet`, with the pod template's and each claim template's defaults.
fn default_spec(spec: &mut StatefulSetSpec) {
    spec.pod_management_policy
        .get_or_insert_with(|| ORDERED_READY.into());
    let strategy = spec
        .update_strategy
        .get_or_insert_with(StatefulSetUpdateStrategy::default);
    if strategy.type_.is_none() {
        strategy.type_ = Some(ROLLING_UPDATE.into());
        strategy.rolling_update.get_or_insert_with(Default::default);
    }
    if strategy.type_.as_deref() == Some(ROLLING_UPDATE)
        && let Some(ru) = strategy.rolling_update.as_mut()
    {
        ru.partition.get_or_insert(0);
        ru.max_unavailable.get_or_insert(IntOrString::Int(1));
    }
    let retention = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
    retention
        .when_deleted
        .get_or_insert_with(|| "Retain".into());
    retention.when_scaled.get_or_insert_with(|| "Retain".into());
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit.get_or_insert(10);
    if let Some(pod) = spec.template.spec.as_mut() {
        rules::default_pod_spec(pod);
    }
    // Each claim template as a claim is defaulted (`volumeMode`, `status.phase`); k8s-openapi writes it
    // with its apiVersion and kind, as kube-apiserver returns it.
    for claim in spec.volume_claim_templates.iter_mut().flatten() {
        claim.default();
    }
}

/// kube's `ValidateStatefulSetSpec`, and each claim template validated as the claim it becomes.
fn validate_spec(spec: &StatefulSetSpec, causes: &mut Vec<Cause>) {
    match spec.pod_management_policy.as_deref() {
        None | Some("") => causes.push(Cause::required("spec.podManagementPolicy")),
        Some(ORDERED_READY | PARALLEL) => {}
        Some(other) => causes.push(Cause::invalid(
            "spec.podManagementPolicy",
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    match strategy.type_.as_deref() {
        None | Some("") => causes.push(Cause::required("spec.updateStrategy")),
        Some(ON_DELETE) => {
            if strategy.rolling_update.is_some() {
                causes.push(Cause::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    "",
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        Some(ROLLING_UPDATE) => {
            if let Some(ru) = &strategy.rolling_update {
                nonnegative(
                    "spec.updateStrategy.rollingUpdate.partition",
                    ru.partition,
                    causes,
                );
                if let Some(max) = &ru.max_unavailable {
                    validate_max_unavailable(max, causes);
                }
            }
        }
        Some(other) => causes.push(Cause::invalid(
            "spec.updateStrategy",
            other,
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = &spec.persistent_volume_claim_retention_policy {
        for (field, value) in [
            ("whenDeleted", &policy.when_deleted),
            ("whenScaled", &policy.when_scaled),
        ] {
            if let Some(v) = value.as_deref()
                && !RETENTION_POLICIES.contains(&v)
            {
                causes.push(Cause::not_supported(
                    format!("spec.persistentVolumeClaimRetentionPolicy.{field}"),
                    v,
                    RETENTION_POLICIES,
                ));
            }
        }
    }
    nonnegative("spec.replicas", spec.replicas, causes);
    nonnegative("spec.minReadySeconds", spec.min_ready_seconds, causes);
    nonnegative(
        "spec.ordinals.start",
        spec.ordinals.as_ref().and_then(|o| o.start),
        causes,
    );
    let selector = LabelSelector::from_k8s(&spec.selector);
    match &selector {
        Ok(sel) if sel.is_empty() => causes.push(Cause::invalid(
            "spec.selector",
            "",
            "empty selector is not valid for statefulset.",
        )),
        Ok(_) => {}
        Err(e) => causes.push(Cause::invalid("spec.selector", "", &e.to_string())),
    }
    crate::validation::selector_matches_template(selector.as_ref().ok(), &spec.template, causes);
    match &spec.template.spec {
        Some(pod) => {
            if let Some(policy) = pod.restart_policy.as_deref()
                && policy != "Always"
            {
                causes.push(Cause::not_supported(
                    "spec.template.spec.restartPolicy",
                    policy,
                    &["Always"],
                ));
            }
            if let Some(deadline) = pod.active_deadline_seconds {
                causes.push(Cause::invalid(
                    "spec.template.spec.activeDeadlineSeconds",
                    deadline,
                    "must not be specified",
                ));
            }
            validation::validate_pod_spec(pod, "spec.template.spec", causes);
        }
        None => causes.push(Cause::required("spec.template.spec.containers")),
    }
    for (i, claim) in spec.volume_claim_templates.iter().flatten().enumerate() {
        validate_claim_template(claim, &format!("spec.volumeClaimTemplates[{i}]"), causes);
    }
}

/// A claim template: a name that can prefix its claims' names, and a spec its claims would be admitted
/// with (causes at the template's path).
fn validate_claim_template(claim: &PersistentVolumeClaim, path: &str, causes: &mut Vec<Cause>) {
    match claim.metadata.name.as_deref() {
        None | Some("") => causes.push(Cause::required(format!("{path}.metadata.name"))),
        Some(name) if !validation::is_dns1123_label(name) => causes.push(Cause::invalid(
            format!("{path}.metadata.name"),
            name,
            validation::DNS1123_LABEL_MSG,
        )),
        Some(_) => {}
    }
    let mut own = Vec::new();
    claim.validate(&mut own);
    causes.extend(own.into_iter().map(|mut c| {
        c.field = format!("{path}.{}", c.field);
        c
    }));
}

/// kube's `maxUnavailable` rules for a StatefulSet: a positive count or a percentage of at most 100%.
fn validate_max_unavailable(max: &IntOrString, causes: &mut Vec<Cause>) {
    const FIELD: &str = "spec.updateStrategy.rollingUpdate.maxUnavailable";
    match max {
        IntOrString::Int(n) => {
            if *n < 0 {
                causes.push(Cause::invalid(
                    FIELD,
                    *n,
                    "must be greater than or equal to 0",
                ));
            } else if *n == 0 {
                causes.push(Cause::invalid(FIELD, *n, "cannot be 0"));
            }
        }
        IntOrString::String(s) => match s.strip_suffix('%').map(str::parse::<u32>) {
            Some(Ok(0)) => causes.push(Cause::invalid(FIELD, s, "cannot be 0")),
            Some(Ok(p)) if p > 100 => {
                causes.push(Cause::invalid(FIELD, s, "must not be greater than 100%"));
            }
            Some(Ok(_)) => {}
            _ => causes.push(Cause::invalid(
                FIELD,
                s,
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            )),
        },
    }
}

fn nonnegative(field: &str, value: Option<i32>, causes: &mut Vec<Cause>) {
    if let Some(v) = value
        && v < 0
    {
        causes.push(Cause::invalid(
            field,
            v,
            "must be greater than or equal to 0",
        ));
    }
}

/// apps/v1 ControllerRevision: a snapshot of a workload's template (kube's `ValidateControllerRevision`
/// and its update: `data` is mandatory and immutable, `revision` not negative).
impl Kind for ControllerRevision {
    fn validate(&self, causes: &mut Vec<Cause>) {
        if self.data.0.is_null() {
            causes.push(Cause {
                reason: "FieldValueRequired",
                field: "data".into(),
                message: "Required value: data is mandatory".into(),
            });
        }
        if let Some(revision) = self.revision
            && revision < 0
        {
            causes.push(Cause::invalid(
                "revision",
                revision,
                "must be greater than or equal to 0",
            ));
        }
    }

    fn validate_update(&mut self, old: &Self, causes: &mut Vec<Cause>) {
        if self.data != old.data {
            causes.push(Cause::invalid("data", "", "field is immutable"));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::admission::admit_update;
    use crate::resources::by_kind;

    fn sets() -> &'static crate::ResourceInfo {
        by_kind("apps/v1", "StatefulSet").unwrap()
    }

    fn set(spec: Value) -> Value {
        let mut base = json!({"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "a:1"}]}}});
        base.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
            "spec": base})
    }

    use crate::admission::invalid_causes_of as causes;

    #[test]
    fn a_stateful_set_gets_kubes_defaults() {
        let claim = json!([{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}}]);
        let admitted = crate::admit(sets(), set(json!({"volumeClaimTemplates": claim}))).unwrap();
        let spec = &admitted["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": 1}})
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        let template = &spec["volumeClaimTemplates"][0];
        assert_eq!(
            (&template["apiVersion"], &template["kind"]),
            (&json!("v1"), &json!("PersistentVolumeClaim"))
        );
        assert_eq!(template["spec"]["volumeMode"], "Filesystem");
        assert_eq!(template["status"]["phase"], "Pending");
        // OnDelete gets no rollingUpdate.
        let on_delete =
            crate::admit(sets(), set(json!({"updateStrategy": {"type": "OnDelete"}}))).unwrap();
        assert_eq!(
            on_delete["spec"]["updateStrategy"],
            json!({"type": "OnDelete"})
        );
    }

    #[test]
    fn a_stateful_set_is_validated_in_kubes_words() {
        let bad = set(json!({"replicas": -1, "podManagementPolicy": "Sometimes",
            "updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}},
            "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Keep"},
            "ordinals": {"start": -2},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {}}]}));
        assert_eq!(
            causes(crate::admit(sets(), bad)),
            [
                "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'",
                "spec.updateStrategy.rollingUpdate: Invalid value: \"\": only allowed for updateStrategy 'RollingUpdate'",
                "spec.persistentVolumeClaimRetentionPolicy.whenScaled: Unsupported value: \"Keep\": supported values: \"Retain\", \"Delete\"",
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.ordinals.start: Invalid value: -2: must be greater than or equal to 0",
                "spec.volumeClaimTemplates[0].spec.accessModes: Required value: at least 1 access mode is required",
                "spec.volumeClaimTemplates[0].spec.resources[storage]: Required value",
            ]
        );
        let mut mismatched = set(json!({"template": {"metadata": {"labels": {"app": "db"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "a:1"}]}}}));
        mismatched["spec"]["selector"] = json!({});
        assert_eq!(
            causes(crate::admit(sets(), mismatched)),
            [
                "spec.selector: Invalid value: \"\": empty selector is not valid for statefulset.",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ]
        );
        let zero = set(json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0}}}));
        assert_eq!(
            causes(crate::admit(sets(), zero)),
            ["spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: cannot be 0"]
        );
    }

    #[test]
    fn an_update_may_change_only_what_a_rollout_or_a_scale_changes() {
        let old = crate::admit(sets(), set(json!({"serviceName": "web"}))).unwrap();
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(5);
        scaled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("a:2");
        scaled["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(3);
        scaled["spec"]["minReadySeconds"] = json!(4);
        scaled["spec"]["ordinals"] = json!({"start": 1});
        assert!(admit_update(sets(), &old, scaled).is_ok());
        let mut renamed = old.clone();
        renamed["spec"]["serviceName"] = json!("other");
        assert_eq!(
            causes(admit_update(sets(), &old, renamed)),
            [
                "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
            ]
        );
    }

    #[test]
    fn a_controller_revision_keeps_its_data() {
        let revisions = by_kind("apps/v1", "ControllerRevision").unwrap();
        assert_eq!(
            causes(crate::admit(
                revisions,
                json!({"metadata": {"name": "r"}, "revision": 1})
            )),
            ["data: Required value: data is mandatory"]
        );
        let old = crate::admit(
            revisions,
            json!({"metadata": {"name": "r"}, "revision": 1, "data": {"a": 1}}),
        )
        .unwrap();
        let mut renumbered = old.clone();
        renumbered["revision"] = json!(4);
        assert!(admit_update(revisions, &old, renumbered).is_ok());
        let mut changed = old.clone();
        changed["data"] = json!({"a": 2});
        assert_eq!(
            causes(admit_update(revisions, &old, changed)),
            ["data: Invalid value: \"\": field is immutable"]
        );
    }
}
