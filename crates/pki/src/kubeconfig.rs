//! A kubeconfig with embedded credentials (kubeadm's `admin.conf` shape): the CA, a client certificate and
//! its key, base64 in the `-data` fields, so the file is all a client needs.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::{IssuedCert, PkiError};

/// One cluster, one user, one context, made current.
#[derive(Clone)]
pub struct Kubeconfig {
    /// `https://host:port`.
    pub server: String,
    pub cluster_name: String,
    pub user_name: String,
    pub context_name: String,
    /// The context's namespace (`None`: kubectl's `default`).
    pub namespace: Option<String>,
    pub ca_pem: String,
    pub client: IssuedCert,
}

impl std::fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("server", &self.server)
            .field("cluster_name", &self.cluster_name)
            .field("user_name", &self.user_name)
            .field("context_name", &self.context_name)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Config<'a> {
    api_version: &'static str,
    kind: &'static str,
    clusters: [Named<'a, Cluster<'a>>; 1],
    users: [Named<'a, User>; 1],
    contexts: [Named<'a, Context<'a>>; 1],
    current_context: &'a str,
    preferences: Empty,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    value: T,
}

#[derive(Serialize)]
struct Cluster<'a> {
    cluster: ClusterFields<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterFields<'a> {
    certificate_authority_data: String,
    server: &'a str,
}

#[derive(Serialize)]
struct User {
    user: UserFields,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct UserFields {
    client_certificate_data: String,
    client_key_data: String,
}

#[derive(Serialize)]
struct Context<'a> {
    context: ContextFields<'a>,
}

#[derive(Serialize)]
struct ContextFields<'a> {
    cluster: &'a str,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
}

impl Kubeconfig {
    /// The YAML text.
    ///
    /// # Errors
    /// [`PkiError::Kubeconfig`] if serialization fails.
    pub fn to_yaml(&self) -> Result<String, PkiError> {
        let config = Config {
            api_version: "v1",
            kind: "Config",
            clusters: [Named {
                name: &self.cluster_name,
                value: Cluster {
                    cluster: ClusterFields {
                        certificate_authority_data: STANDARD.encode(&self.ca_pem),
                        server: &self.server,
                    },
                },
            }],
            users: [Named {
                name: &self.user_name,
                value: User {
                    user: UserFields {
                        client_certificate_data: STANDARD.encode(&self.client.cert_pem),
                        client_key_data: STANDARD.encode(&self.client.key_pem),
                    },
                },
            }],
            contexts: [Named {
                name: &self.context_name,
                value: Context {
                    context: ContextFields {
                        cluster: &self.cluster_name,
                        user: &self.user_name,
                        namespace: self.namespace.as_deref(),
                    },
                },
            }],
            current_context: &self.context_name,
            preferences: Empty {},
        };
        Ok(serde_yaml::to_string(&config)?)
    }

    /// Writes the YAML to `path` atomically with mode 0600: it holds a private key.
    ///
    /// # Errors
    /// [`PkiError::Io`] if the file cannot be written, [`PkiError::Kubeconfig`] as [`Kubeconfig::to_yaml`].
    pub fn write(&self, path: &Path) -> Result<(), PkiError> {
        let yaml = self.to_yaml()?;
        herd_atomic_file::write_private(path, yaml.as_bytes()).map_err(PkiError::io(path))
    }
}
