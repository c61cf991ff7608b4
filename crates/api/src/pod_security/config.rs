//! The Pod Security admission plugin's configuration: kube-apiserver's `PodSecurityConfiguration`
//! (`pod-security.admission.config.k8s.io/v1`), given inside an `AdmissionConfiguration`
//! (`--admission-control-config-file`) or alone: the policy of namespaces without labels (`defaults`) and the
//! namespaces and runtime classes that are never checked (`exemptions`).
//!
//! herd's own default ([`AdmissionConfig::herd_default`]) is stricter than kube-apiserver's (everything
//! `privileged`): `baseline` for enforce, audit and warn, `kube-system` exempt — a pod cannot preopen the host's
//! files (`hostPath`) or take host ports unless its namespace is labelled `privileged`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Level, LevelVersion, Policy, Version};

/// The kind and group-version of the plugin's configuration, and of the admission configuration around it.
const POD_SECURITY_CONFIGURATION: &str = "PodSecurityConfiguration";
const POD_SECURITY_GROUP: &str = "pod-security.admission.config.k8s.io/";
const ADMISSION_CONFIGURATION: &str = "AdmissionConfiguration";

/// What Pod Security admission applies where a namespace says nothing, and what it leaves alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// The policy of a namespace without `pod-security.kubernetes.io/*` labels (labels override it mode by mode).
    pub defaults: Policy,
    /// Namespaces whose pods are never checked.
    pub exempt_namespaces: BTreeSet<String>,
    /// Pods of these `runtimeClassName`s are never checked.
    pub exempt_runtime_classes: BTreeSet<String>,
}

impl AdmissionConfig {
    /// kube-apiserver without a configuration: privileged everywhere, nothing exempt.
    pub fn kube_default() -> Self {
        Self {
            defaults: Policy::default(),
            exempt_namespaces: BTreeSet::new(),
            exempt_runtime_classes: BTreeSet::new(),
        }
    }

    /// herd's default: `baseline:latest` enforced, audited and warned about; `kube-system` exempt.
    pub fn herd_default() -> Self {
        let baseline = LevelVersion::latest(Level::Baseline);
        Self {
            defaults: Policy {
                enforce: baseline,
                audit: baseline,
                warn: baseline,
            },
            exempt_namespaces: BTreeSet::from(["kube-system".to_owned()]),
            exempt_runtime_classes: BTreeSet::new(),
        }
    }

    /// Reads an `AdmissionConfiguration` holding a `PodSecurity` plugin's configuration inline, or a
    /// `PodSecurityConfiguration` alone. Fields it leaves out are kube's defaults (privileged, latest, no
    /// exemptions); an `AdmissionConfiguration` without a `PodSecurity` plugin is kube's default.
    ///
    /// # Errors
    ///
    /// A one-line reason: another kind, an unknown level or version, a plugin configured by `path`, or
    /// `exemptions.usernames` (herd's admission does not see the requesting user).
    pub fn from_value(doc: &Value) -> Result<Self, String> {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let config = match kind {
            ADMISSION_CONFIGURATION => {
                let plugins = doc["plugins"].as_array().cloned().unwrap_or_default();
                let Some(plugin) = plugins.iter().find(|p| p["name"] == "PodSecurity") else {
                    return Ok(Self::kube_default());
                };
                if plugin.get("path").is_some_and(|p| !p.is_null()) {
                    return Err(
                        "plugins[PodSecurity].path is not supported: give the PodSecurityConfiguration \
                         inline as plugins[PodSecurity].configuration"
                            .to_owned(),
                    );
                }
                plugin["configuration"].clone()
            }
            POD_SECURITY_CONFIGURATION => doc.clone(),
            other => {
                return Err(format!(
                    "expected kind AdmissionConfiguration or PodSecurityConfiguration, got {other:?}"
                ));
            }
        };
        if config["kind"] != POD_SECURITY_CONFIGURATION {
            return Err(format!(
                "the PodSecurity plugin's configuration must be a {POD_SECURITY_CONFIGURATION}, got {}",
                config["kind"]
            ));
        }
        let api_version = config["apiVersion"].as_str().unwrap_or_default();
        if !api_version.starts_with(POD_SECURITY_GROUP) {
            return Err(format!(
                "unknown apiVersion {api_version:?} of {POD_SECURITY_CONFIGURATION} (expected {POD_SECURITY_GROUP}v1)"
            ));
        }
        let defaults = &config["defaults"];
        let mode = |name: &str| -> Result<LevelVersion, String> {
            let level = match defaults[name].as_str() {
                None | Some("") => Level::Privileged,
                Some(v) => Level::parse(v).map_err(|m| format!("defaults.{name}: {v:?}: {m}"))?,
            };
            let version_key = format!("{name}-version");
            let version = match defaults[&version_key].as_str() {
                None | Some("") => Version::Latest,
                Some(v) => {
                    Version::parse(v).map_err(|m| format!("defaults.{version_key}: {v:?}: {m}"))?
                }
            };
            Ok(LevelVersion { level, version })
        };
        let exemptions = &config["exemptions"];
        let names = |key: &str| -> BTreeSet<String> {
            exemptions[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        };
        if !names("usernames").is_empty() {
            return Err(
                "exemptions.usernames is not supported by herd (exempt namespaces or runtimeClasses)"
                    .to_owned(),
            );
        }
        Ok(Self {
            defaults: Policy {
                enforce: mode("enforce")?,
                audit: mode("audit")?,
                warn: mode("warn")?,
            },
            exempt_namespaces: names("namespaces"),
            exempt_runtime_classes: names("runtimeClasses"),
        })
    }
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self::herd_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_admission_configuration_with_the_plugin_inline() {
        let config = AdmissionConfig::from_value(&json!({
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "AdmissionConfiguration",
            "plugins": [{"name": "PodSecurity", "configuration": {
                "apiVersion": "pod-security.admission.config.k8s.io/v1",
                "kind": "PodSecurityConfiguration",
                "defaults": {"enforce": "restricted", "enforce-version": "v1.30", "warn": "baseline"},
                "exemptions": {"namespaces": ["tools"], "runtimeClasses": ["trusted"]},
            }}],
        }))
        .expect("config");
        assert_eq!(config.defaults.enforce.level, Level::Restricted);
        assert_ne!(config.defaults.enforce.version, Version::Latest);
        assert_eq!(config.defaults.warn, LevelVersion::latest(Level::Baseline));
        assert_eq!(config.defaults.audit, LevelVersion::PRIVILEGED);
        assert_eq!(config.exempt_namespaces, BTreeSet::from(["tools".into()]));
        assert_eq!(
            config.exempt_runtime_classes,
            BTreeSet::from(["trusted".into()])
        );
    }

    #[test]
    fn kube_defaults_where_the_file_says_nothing() {
        let privileged = AdmissionConfig::from_value(&json!({
            "apiVersion": "pod-security.admission.config.k8s.io/v1",
            "kind": "PodSecurityConfiguration",
        }))
        .expect("config");
        assert_eq!(privileged, AdmissionConfig::kube_default());
        let no_plugin = AdmissionConfig::from_value(&json!({
            "apiVersion": "apiserver.config.k8s.io/v1", "kind": "AdmissionConfiguration", "plugins": [],
        }))
        .expect("config");
        assert_eq!(no_plugin, AdmissionConfig::kube_default());
    }

    #[test]
    fn bad_files_are_one_line_errors() {
        let err = |doc: Value| AdmissionConfig::from_value(&doc).expect_err("refused");
        assert!(err(json!({"kind": "Pod"})).contains("expected kind AdmissionConfiguration"));
        assert!(
            err(
                json!({"apiVersion": "pod-security.admission.config.k8s.io/v1",
                "kind": "PodSecurityConfiguration", "defaults": {"enforce": "strict"}})
            )
            .starts_with("defaults.enforce: \"strict\"")
        );
        assert!(
            err(
                json!({"apiVersion": "pod-security.admission.config.k8s.io/v1",
                "kind": "PodSecurityConfiguration", "exemptions": {"usernames": ["admin"]}})
            )
            .contains("usernames is not supported")
        );
        assert!(
            err(json!({"kind": "AdmissionConfiguration",
                "plugins": [{"name": "PodSecurity", "path": "psa.yaml"}]}))
            .contains("path is not supported")
        );
    }
}
