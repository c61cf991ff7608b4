//! A kubeconfig with embedded credentials (kubeadm's `admin.conf` shape): the CA, a client certificate and
//! its key, base64 in the `-data` fields, so the file is all a client needs.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

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

/// The parts of a kubeconfig file [`Kubeconfig::parse`] reads (kebab-case keys, as kubectl writes them).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ReadConfig {
    #[serde(default)]
    clusters: Vec<ReadNamed<ReadCluster>>,
    #[serde(default)]
    users: Vec<ReadNamed<ReadUser>>,
    #[serde(default)]
    contexts: Vec<ReadNamed<ReadContext>>,
    #[serde(default)]
    current_context: String,
}

#[derive(Deserialize)]
struct ReadNamed<T> {
    name: String,
    #[serde(flatten)]
    value: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ReadCluster {
    cluster: ReadClusterFields,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ReadClusterFields {
    server: String,
    #[serde(default)]
    certificate_authority_data: String,
}

#[derive(Deserialize)]
struct ReadUser {
    user: ReadUserFields,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ReadUserFields {
    #[serde(default)]
    client_certificate_data: String,
    #[serde(default)]
    client_key_data: String,
}

#[derive(Deserialize)]
struct ReadContext {
    context: ReadContextFields,
}

#[derive(Deserialize)]
struct ReadContextFields {
    cluster: String,
    user: String,
    #[serde(default)]
    namespace: Option<String>,
}

impl Kubeconfig {
    /// Reads back a kubeconfig with embedded credentials: the current context's cluster (its server and
    /// `certificate-authority-data`) and user (`client-certificate-data`, `client-key-data`).
    ///
    /// # Errors
    /// [`PkiError::Kubeconfig`] for YAML that is no kubeconfig, [`PkiError::Invalid`] when the current
    /// context, its cluster or user is missing or the credentials are not embedded base64 PEM.
    pub fn parse(text: &str) -> Result<Self, PkiError> {
        let config: ReadConfig = serde_yaml::from_str(text)?;
        let invalid = |reason: String| PkiError::invalid("the kubeconfig", reason);
        let context = config
            .contexts
            .into_iter()
            .find(|c| c.name == config.current_context)
            .ok_or_else(|| invalid(format!("no context {:?}", config.current_context)))?;
        let ReadContextFields {
            cluster,
            user,
            namespace,
        } = context.value.context;
        let cluster_entry = config
            .clusters
            .into_iter()
            .find(|c| c.name == cluster)
            .ok_or_else(|| invalid(format!("no cluster {cluster:?}")))?;
        let user_entry = config
            .users
            .into_iter()
            .find(|u| u.name == user)
            .ok_or_else(|| invalid(format!("no user {user:?}")))?;
        let decode = |field: &str, data: &str| {
            STANDARD
                .decode(data.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .filter(|text| !text.is_empty())
                .ok_or_else(|| invalid(format!("{field} is not embedded base64 PEM")))
        };
        let ca_pem = decode(
            "certificate-authority-data",
            &cluster_entry.value.cluster.certificate_authority_data,
        )?;
        let client = IssuedCert {
            cert_pem: decode(
                "client-certificate-data",
                &user_entry.value.user.client_certificate_data,
            )?,
            key_pem: decode("client-key-data", &user_entry.value.user.client_key_data)?,
        };
        Ok(Self {
            server: cluster_entry.value.cluster.server,
            cluster_name: cluster,
            user_name: user,
            context_name: context.name,
            namespace,
            ca_pem,
            client,
        })
    }

    /// [`Kubeconfig::parse`] of the file at `path`.
    ///
    /// # Errors
    /// [`PkiError::Io`] if it cannot be read, else as [`Kubeconfig::parse`].
    pub fn read(path: &Path) -> Result<Self, PkiError> {
        let text = std::fs::read_to_string(path).map_err(PkiError::io(path))?;
        Self::parse(&text)
    }
}
