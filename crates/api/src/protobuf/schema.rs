//! Which protobuf field of which Kubernetes message carries which JSON field, for the objects kubectl's generator
//! commands (`kubectl create namespace|configmap|secret|deployment|service|serviceaccount|job|poddisruptionbudget|
//! role|clusterrole|rolebinding|clusterrolebinding|token`, `kubectl auth can-i|whoami`, `kubectl certificate
//! approve|deny`) send.
//!
//! Field numbers come from the Kubernetes `generated.proto` files (as vendored by the k8s-pb crate), JSON names from
//! the Go `json` tags (as k8s-openapi spells them). Fields not listed here are skipped by the decoder.

use Kind::*;

/// How a field's value is encoded and how it appears in JSON.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// `string` → JSON string.
    Str,
    /// `bytes` → JSON base64 string.
    Bytes,
    /// `int32`/`int64` varint → JSON number.
    Int,
    /// `bool` varint → JSON bool.
    Bool,
    /// Nested message → JSON object.
    Msg(&'static [Field]),
    /// A Go embedded struct: its fields are merged into the enclosing JSON object.
    Inline(&'static [Field]),
    /// `map<string, string>` → JSON object of strings.
    MapStr,
    /// `map<string, bytes>` → JSON object of base64 strings.
    MapBytes,
    /// `map<string, resource.Quantity>` → JSON object of quantity strings.
    MapQuantity,
    /// `intstr.IntOrString` → JSON number or string.
    IntOrString,
    /// `resource.Quantity` → JSON string.
    Quantity,
    /// `meta.v1.Time` → RFC 3339 string, absent when zero.
    Time,
}

/// One field of a message.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub tag: u32,
    pub json: &'static str,
    pub kind: Kind,
    pub repeated: bool,
    /// Go sends this field only when it is set (a pointer), or always shows it in JSON (no `omitempty`), so a zero
    /// value is kept. Other scalars are dropped when zero, as Go's `omitempty` drops them from JSON.
    pub keep_zero: bool,
}

/// A field that is dropped from JSON when zero.
const fn f(tag: u32, json: &'static str, kind: Kind) -> Field {
    Field {
        tag,
        json,
        kind,
        repeated: false,
        keep_zero: false,
    }
}

/// A field whose zero value is kept (a Go pointer, or a required field).
const fn p(tag: u32, json: &'static str, kind: Kind) -> Field {
    Field {
        tag,
        json,
        kind,
        repeated: false,
        keep_zero: true,
    }
}

/// A repeated field; absent when empty.
const fn r(tag: u32, json: &'static str, kind: Kind) -> Field {
    Field {
        tag,
        json,
        kind,
        repeated: true,
        keep_zero: false,
    }
}

/// The message schema for a top-level object, by `apiVersion` and `kind`.
pub(super) fn root(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "Pod") => POD,
        ("v1", "Service") => SERVICE,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("apps/v1", "Deployment") => DEPLOYMENT,
        ("batch/v1", "Job") => JOB,
        ("batch/v1", "CronJob") => CRON_JOB,
        ("policy/v1", "PodDisruptionBudget") => POD_DISRUPTION_BUDGET,
        ("rbac.authorization.k8s.io/v1", "Role") => ROLE,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => CLUSTER_ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => ROLE_BINDING,
        ("authentication.k8s.io/v1", "TokenRequest") => TOKEN_REQUEST,
        ("certificates.k8s.io/v1", "CertificateSigningRequest") => CERTIFICATE_SIGNING_REQUEST,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => SELF_SUBJECT_REVIEW,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SELF_SUBJECT_ACCESS_REVIEW,
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => SELF_SUBJECT_RULES_REVIEW,
        _ => return None,
    })
}

/// `meta.v1.ObjectMeta`
const OBJECT_META: &[Field] = &[
    f(1, "name", Str),
    f(2, "generateName", Str),
    f(3, "namespace", Str),
    f(5, "uid", Str),
    f(6, "resourceVersion", Str),
    f(7, "generation", Int),
    f(8, "creationTimestamp", Time),
    f(11, "labels", MapStr),
    f(12, "annotations", MapStr),
    r(13, "ownerReferences", Msg(OWNER_REFERENCE)),
    r(14, "finalizers", Str),
];
/// `meta.v1.OwnerReference`
const OWNER_REFERENCE: &[Field] = &[
    p(5, "apiVersion", Str),
    p(1, "kind", Str),
    p(3, "name", Str),
    p(4, "uid", Str),
    p(6, "controller", Bool),
    p(7, "blockOwnerDeletion", Bool),
];
/// `meta.v1.LabelSelector`
const LABEL_SELECTOR: &[Field] = &[
    f(1, "matchLabels", MapStr),
    r(2, "matchExpressions", Msg(LABEL_SELECTOR_REQUIREMENT)),
];
/// `meta.v1.LabelSelectorRequirement`
const LABEL_SELECTOR_REQUIREMENT: &[Field] =
    &[p(1, "key", Str), p(2, "operator", Str), r(3, "values", Str)];
/// `core.v1.Namespace`
const NAMESPACE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(NAMESPACE_SPEC)),
];
/// `core.v1.NamespaceSpec`
const NAMESPACE_SPEC: &[Field] = &[r(1, "finalizers", Str)];
/// `core.v1.ConfigMap`
const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    p(4, "immutable", Bool),
    f(2, "data", MapStr),
    f(3, "binaryData", MapBytes),
];
/// `core.v1.Secret`
const SECRET: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    p(5, "immutable", Bool),
    f(2, "data", MapBytes),
    f(4, "stringData", MapStr),
    f(3, "type", Str),
];
/// `core.v1.Pod`
const POD: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(POD_SPEC)),
];
/// `core.v1.PodSpec`
const POD_SPEC: &[Field] = &[
    r(1, "volumes", Msg(VOLUME)),
    r(20, "initContainers", Msg(CONTAINER)),
    r(2, "containers", Msg(CONTAINER)),
    f(3, "restartPolicy", Str),
    p(4, "terminationGracePeriodSeconds", Int),
    p(5, "activeDeadlineSeconds", Int),
    f(6, "dnsPolicy", Str),
    f(7, "nodeSelector", MapStr),
    f(8, "serviceAccountName", Str),
    f(9, "serviceAccount", Str),
    p(21, "automountServiceAccountToken", Bool),
    f(10, "nodeName", Str),
    f(11, "hostNetwork", Bool),
    f(12, "hostPID", Bool),
    f(13, "hostIPC", Bool),
    p(27, "shareProcessNamespace", Bool),
    r(15, "imagePullSecrets", Msg(LOCAL_OBJECT_REFERENCE)),
    f(16, "hostname", Str),
    f(17, "subdomain", Str),
    f(19, "schedulerName", Str),
    r(22, "tolerations", Msg(TOLERATION)),
    f(24, "priorityClassName", Str),
    p(25, "priority", Int),
    f(29, "runtimeClassName", Str),
    p(30, "enableServiceLinks", Bool),
    p(31, "preemptionPolicy", Str),
    f(32, "overhead", MapQuantity),
    p(35, "setHostnameAsFQDN", Bool),
    p(37, "hostUsers", Bool),
    f(40, "resources", Msg(RESOURCE_REQUIREMENTS)),
    p(41, "hostnameOverride", Str),
];
/// `core.v1.PodTemplateSpec`
const POD_TEMPLATE_SPEC: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(POD_SPEC)),
];
/// `core.v1.Container`
const CONTAINER: &[Field] = &[
    p(1, "name", Str),
    f(2, "image", Str),
    r(3, "command", Str),
    r(4, "args", Str),
    f(5, "workingDir", Str),
    r(6, "ports", Msg(CONTAINER_PORT)),
    r(19, "envFrom", Msg(ENV_FROM_SOURCE)),
    r(7, "env", Msg(ENV_VAR)),
    f(8, "resources", Msg(RESOURCE_REQUIREMENTS)),
    p(24, "restartPolicy", Str),
    r(9, "volumeMounts", Msg(VOLUME_MOUNT)),
    f(13, "terminationMessagePath", Str),
    f(20, "terminationMessagePolicy", Str),
    f(14, "imagePullPolicy", Str),
    f(16, "stdin", Bool),
    f(17, "stdinOnce", Bool),
    f(18, "tty", Bool),
];
/// `core.v1.ContainerPort`
const CONTAINER_PORT: &[Field] = &[
    f(1, "name", Str),
    f(2, "hostPort", Int),
    p(3, "containerPort", Int),
    f(4, "protocol", Str),
    f(5, "hostIP", Str),
];
/// `core.v1.EnvVar`
const ENV_VAR: &[Field] = &[
    p(1, "name", Str),
    f(2, "value", Str),
    f(3, "valueFrom", Msg(ENV_VAR_SOURCE)),
];
/// `core.v1.EnvVarSource`
const ENV_VAR_SOURCE: &[Field] = &[
    f(1, "fieldRef", Msg(OBJECT_FIELD_SELECTOR)),
    f(2, "resourceFieldRef", Msg(RESOURCE_FIELD_SELECTOR)),
    f(3, "configMapKeyRef", Msg(CONFIG_MAP_KEY_SELECTOR)),
    f(4, "secretKeyRef", Msg(SECRET_KEY_SELECTOR)),
];
/// `core.v1.ObjectFieldSelector`
const OBJECT_FIELD_SELECTOR: &[Field] = &[f(1, "apiVersion", Str), p(2, "fieldPath", Str)];
/// `core.v1.ResourceFieldSelector`
const RESOURCE_FIELD_SELECTOR: &[Field] = &[
    f(1, "containerName", Str),
    p(2, "resource", Str),
    f(3, "divisor", Quantity),
];
/// `core.v1.ConfigMapKeySelector`
const CONFIG_MAP_KEY_SELECTOR: &[Field] = &[
    f(1, "", Inline(LOCAL_OBJECT_REFERENCE)),
    p(2, "key", Str),
    p(3, "optional", Bool),
];
/// `core.v1.SecretKeySelector`
const SECRET_KEY_SELECTOR: &[Field] = &[
    f(1, "", Inline(LOCAL_OBJECT_REFERENCE)),
    p(2, "key", Str),
    p(3, "optional", Bool),
];
/// `core.v1.EnvFromSource`
const ENV_FROM_SOURCE: &[Field] = &[
    f(1, "prefix", Str),
    f(2, "configMapRef", Msg(CONFIG_MAP_ENV_SOURCE)),
    f(3, "secretRef", Msg(SECRET_ENV_SOURCE)),
];
/// `core.v1.ConfigMapEnvSource`
const CONFIG_MAP_ENV_SOURCE: &[Field] = &[
    f(1, "", Inline(LOCAL_OBJECT_REFERENCE)),
    p(2, "optional", Bool),
];
/// `core.v1.SecretEnvSource`
const SECRET_ENV_SOURCE: &[Field] = &[
    f(1, "", Inline(LOCAL_OBJECT_REFERENCE)),
    p(2, "optional", Bool),
];
/// `core.v1.ResourceRequirements`
const RESOURCE_REQUIREMENTS: &[Field] =
    &[f(1, "limits", MapQuantity), f(2, "requests", MapQuantity)];
/// `core.v1.VolumeMount`
const VOLUME_MOUNT: &[Field] = &[
    p(1, "name", Str),
    f(2, "readOnly", Bool),
    p(7, "recursiveReadOnly", Str),
    p(3, "mountPath", Str),
    f(4, "subPath", Str),
    p(5, "mountPropagation", Str),
    f(6, "subPathExpr", Str),
];
/// `core.v1.Volume`
const VOLUME: &[Field] = &[p(1, "name", Str), f(2, "", Inline(VOLUME_SOURCE))];
/// `core.v1.EmptyDirVolumeSource`
const EMPTY_DIR_VOLUME_SOURCE: &[Field] = &[f(1, "medium", Str), f(2, "sizeLimit", Quantity)];
/// `core.v1.ConfigMapVolumeSource`
const CONFIG_MAP_VOLUME_SOURCE: &[Field] = &[
    f(1, "", Inline(LOCAL_OBJECT_REFERENCE)),
    r(2, "items", Msg(KEY_TO_PATH)),
    p(3, "defaultMode", Int),
    p(4, "optional", Bool),
];
/// `core.v1.SecretVolumeSource`
const SECRET_VOLUME_SOURCE: &[Field] = &[
    f(1, "secretName", Str),
    r(2, "items", Msg(KEY_TO_PATH)),
    p(3, "defaultMode", Int),
    p(4, "optional", Bool),
];
/// `core.v1.KeyToPath`
const KEY_TO_PATH: &[Field] = &[p(1, "key", Str), p(2, "path", Str), p(3, "mode", Int)];
/// `core.v1.HostPathVolumeSource`
const HOST_PATH_VOLUME_SOURCE: &[Field] = &[p(1, "path", Str), p(2, "type", Str)];
/// `core.v1.VolumeSource`
const VOLUME_SOURCE: &[Field] = &[
    f(1, "hostPath", Msg(HOST_PATH_VOLUME_SOURCE)),
    f(2, "emptyDir", Msg(EMPTY_DIR_VOLUME_SOURCE)),
    f(6, "secret", Msg(SECRET_VOLUME_SOURCE)),
    f(19, "configMap", Msg(CONFIG_MAP_VOLUME_SOURCE)),
];
/// `core.v1.Toleration`
const TOLERATION: &[Field] = &[
    f(1, "key", Str),
    f(2, "operator", Str),
    f(3, "value", Str),
    f(4, "effect", Str),
    p(5, "tolerationSeconds", Int),
];
/// `core.v1.Service`
const SERVICE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(SERVICE_SPEC)),
];
/// `core.v1.ServiceSpec`
const SERVICE_SPEC: &[Field] = &[
    r(1, "ports", Msg(SERVICE_PORT)),
    f(2, "selector", MapStr),
    f(3, "clusterIP", Str),
    r(18, "clusterIPs", Str),
    f(4, "type", Str),
    r(5, "externalIPs", Str),
    f(7, "sessionAffinity", Str),
    f(8, "loadBalancerIP", Str),
    r(9, "loadBalancerSourceRanges", Str),
    f(10, "externalName", Str),
    f(11, "externalTrafficPolicy", Str),
    f(12, "healthCheckNodePort", Int),
    f(13, "publishNotReadyAddresses", Bool),
    r(19, "ipFamilies", Str),
    p(17, "ipFamilyPolicy", Str),
    p(20, "allocateLoadBalancerNodePorts", Bool),
    p(21, "loadBalancerClass", Str),
    p(22, "internalTrafficPolicy", Str),
    p(23, "trafficDistribution", Str),
];
/// `core.v1.ServicePort`
const SERVICE_PORT: &[Field] = &[
    f(1, "name", Str),
    f(2, "protocol", Str),
    p(6, "appProtocol", Str),
    p(3, "port", Int),
    f(4, "targetPort", IntOrString),
    f(5, "nodePort", Int),
];
/// `core.v1.LocalObjectReference`
const LOCAL_OBJECT_REFERENCE: &[Field] = &[f(1, "name", Str)];
/// `core.v1.ServiceAccount`
const SERVICE_ACCOUNT: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(2, "secrets", Msg(OBJECT_REFERENCE)),
    r(3, "imagePullSecrets", Msg(LOCAL_OBJECT_REFERENCE)),
    p(4, "automountServiceAccountToken", Bool),
];
/// `core.v1.ObjectReference`
const OBJECT_REFERENCE: &[Field] = &[
    f(1, "kind", Str),
    f(2, "namespace", Str),
    f(3, "name", Str),
    f(4, "uid", Str),
    f(5, "apiVersion", Str),
    f(6, "resourceVersion", Str),
    f(7, "fieldPath", Str),
];
/// `apps.v1.Deployment`
const DEPLOYMENT: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(DEPLOYMENT_SPEC)),
];
/// `apps.v1.DeploymentSpec`
const DEPLOYMENT_SPEC: &[Field] = &[
    p(1, "replicas", Int),
    f(2, "selector", Msg(LABEL_SELECTOR)),
    f(3, "template", Msg(POD_TEMPLATE_SPEC)),
    f(4, "strategy", Msg(DEPLOYMENT_STRATEGY)),
    f(5, "minReadySeconds", Int),
    p(6, "revisionHistoryLimit", Int),
    f(7, "paused", Bool),
    p(9, "progressDeadlineSeconds", Int),
];
/// `apps.v1.DeploymentStrategy`
const DEPLOYMENT_STRATEGY: &[Field] = &[
    f(1, "type", Str),
    f(2, "rollingUpdate", Msg(ROLLING_UPDATE_DEPLOYMENT)),
];
/// `apps.v1.RollingUpdateDeployment`
const ROLLING_UPDATE_DEPLOYMENT: &[Field] = &[
    f(1, "maxUnavailable", IntOrString),
    f(2, "maxSurge", IntOrString),
];
/// `batch.v1.Job`
const JOB: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(JOB_SPEC)),
];
/// `batch.v1.JobSpec` (`podFailurePolicy` and `successPolicy` are not decoded: no generator sets them)
const JOB_SPEC: &[Field] = &[
    p(1, "parallelism", Int),
    p(2, "completions", Int),
    p(3, "activeDeadlineSeconds", Int),
    p(7, "backoffLimit", Int),
    p(12, "backoffLimitPerIndex", Int),
    p(13, "maxFailedIndexes", Int),
    f(4, "selector", Msg(LABEL_SELECTOR)),
    p(5, "manualSelector", Bool),
    f(6, "template", Msg(POD_TEMPLATE_SPEC)),
    p(8, "ttlSecondsAfterFinished", Int),
    p(9, "completionMode", Str),
    p(10, "suspend", Bool),
    p(14, "podReplacementPolicy", Str),
    p(15, "managedBy", Str),
];
/// `batch.v1.CronJob` (what `kubectl create cronjob` sends)
const CRON_JOB: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(CRON_JOB_SPEC)),
];
/// `batch.v1.CronJobSpec`
const CRON_JOB_SPEC: &[Field] = &[
    f(1, "schedule", Str),
    p(8, "timeZone", Str),
    p(2, "startingDeadlineSeconds", Int),
    f(3, "concurrencyPolicy", Str),
    p(4, "suspend", Bool),
    f(5, "jobTemplate", Msg(JOB_TEMPLATE_SPEC)),
    p(6, "successfulJobsHistoryLimit", Int),
    p(7, "failedJobsHistoryLimit", Int),
];
/// `batch.v1.JobTemplateSpec`
const JOB_TEMPLATE_SPEC: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(JOB_SPEC)),
];
/// `policy.v1.PodDisruptionBudget`
const POD_DISRUPTION_BUDGET: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(POD_DISRUPTION_BUDGET_SPEC)),
];
/// `policy.v1.PodDisruptionBudgetSpec`
const POD_DISRUPTION_BUDGET_SPEC: &[Field] = &[
    f(1, "minAvailable", IntOrString),
    f(2, "selector", Msg(LABEL_SELECTOR)),
    f(3, "maxUnavailable", IntOrString),
    p(4, "unhealthyPodEvictionPolicy", Str),
];
/// `rbac.v1.Role`
const ROLE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(2, "rules", Msg(POLICY_RULE)),
];
/// `rbac.v1.ClusterRole`
const CLUSTER_ROLE: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(2, "rules", Msg(POLICY_RULE)),
    f(3, "aggregationRule", Msg(AGGREGATION_RULE)),
];
/// `rbac.v1.PolicyRule`
const POLICY_RULE: &[Field] = &[
    r(1, "verbs", Str),
    r(2, "apiGroups", Str),
    r(3, "resources", Str),
    r(4, "resourceNames", Str),
    r(5, "nonResourceURLs", Str),
];
/// `rbac.v1.AggregationRule`
const AGGREGATION_RULE: &[Field] = &[r(1, "clusterRoleSelectors", Msg(LABEL_SELECTOR))];
/// `rbac.v1.RoleBinding` and `rbac.v1.ClusterRoleBinding` (the same fields)
const ROLE_BINDING: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(2, "subjects", Msg(SUBJECT)),
    f(3, "roleRef", Msg(ROLE_REF)),
];
/// `rbac.v1.RoleRef`
const ROLE_REF: &[Field] = &[p(1, "apiGroup", Str), p(2, "kind", Str), p(3, "name", Str)];
/// `rbac.v1.Subject`
const SUBJECT: &[Field] = &[
    p(1, "kind", Str),
    f(2, "apiGroup", Str),
    p(3, "name", Str),
    f(4, "namespace", Str),
];
/// `authentication.v1.TokenRequest` (`kubectl create token`)
const TOKEN_REQUEST: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(TOKEN_REQUEST_SPEC)),
];
/// `authentication.v1.TokenRequestSpec`
const TOKEN_REQUEST_SPEC: &[Field] = &[
    r(1, "audiences", Str),
    f(3, "boundObjectRef", Msg(BOUND_OBJECT_REFERENCE)),
    p(4, "expirationSeconds", Int),
];
/// `authentication.v1.BoundObjectReference`
const BOUND_OBJECT_REFERENCE: &[Field] = &[
    f(1, "kind", Str),
    f(2, "apiVersion", Str),
    f(3, "name", Str),
    f(4, "uid", Str),
];
/// `authentication.v1.SelfSubjectReview` (`kubectl auth whoami`): nothing but metadata is sent.
const SELF_SUBJECT_REVIEW: &[Field] = &[f(1, "metadata", Msg(OBJECT_META))];
/// `authorization.v1.SelfSubjectAccessReview` (`kubectl auth can-i VERB RESOURCE`)
const SELF_SUBJECT_ACCESS_REVIEW: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(SELF_SUBJECT_ACCESS_REVIEW_SPEC)),
];
/// `authorization.v1.SelfSubjectAccessReviewSpec`
const SELF_SUBJECT_ACCESS_REVIEW_SPEC: &[Field] = &[
    f(1, "resourceAttributes", Msg(RESOURCE_ATTRIBUTES)),
    f(2, "nonResourceAttributes", Msg(NON_RESOURCE_ATTRIBUTES)),
];
/// `authorization.v1.ResourceAttributes` (the field and label selector attributes are not decoded)
const RESOURCE_ATTRIBUTES: &[Field] = &[
    f(1, "namespace", Str),
    f(2, "verb", Str),
    f(3, "group", Str),
    f(4, "version", Str),
    f(5, "resource", Str),
    f(6, "subresource", Str),
    f(7, "name", Str),
];
/// `authorization.v1.NonResourceAttributes`
const NON_RESOURCE_ATTRIBUTES: &[Field] = &[f(1, "path", Str), f(2, "verb", Str)];
/// `authorization.v1.SelfSubjectRulesReview` (`kubectl auth can-i --list`)
const SELF_SUBJECT_RULES_REVIEW: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(SELF_SUBJECT_RULES_REVIEW_SPEC)),
];
/// `authorization.v1.SelfSubjectRulesReviewSpec`
const SELF_SUBJECT_RULES_REVIEW_SPEC: &[Field] = &[f(1, "namespace", Str)];
/// `certificates.v1.CertificateSigningRequest` (`kubectl certificate approve|deny` send it whole)
const CERTIFICATE_SIGNING_REQUEST: &[Field] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(CERTIFICATE_SIGNING_REQUEST_SPEC)),
    f(3, "status", Msg(CERTIFICATE_SIGNING_REQUEST_STATUS)),
];
/// `certificates.v1.CertificateSigningRequestSpec` (`extra` is not decoded)
const CERTIFICATE_SIGNING_REQUEST_SPEC: &[Field] = &[
    f(1, "request", Bytes),
    f(2, "username", Str),
    f(3, "uid", Str),
    r(4, "groups", Str),
    r(5, "usages", Str),
    f(7, "signerName", Str),
    p(8, "expirationSeconds", Int),
];
/// `certificates.v1.CertificateSigningRequestStatus`
const CERTIFICATE_SIGNING_REQUEST_STATUS: &[Field] = &[
    r(1, "conditions", Msg(CERTIFICATE_SIGNING_REQUEST_CONDITION)),
    f(2, "certificate", Bytes),
];
/// `certificates.v1.CertificateSigningRequestCondition`
const CERTIFICATE_SIGNING_REQUEST_CONDITION: &[Field] = &[
    f(1, "type", Str),
    f(2, "reason", Str),
    f(3, "message", Str),
    f(4, "lastUpdateTime", Time),
    f(5, "lastTransitionTime", Time),
    f(6, "status", Str),
];
