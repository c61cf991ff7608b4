//! One PKI for every control plane replica of a cluster: the key material in the data dir that all replicas
//! must share — the cluster CA (`pki/ca.crt`, `pki/ca.key`: every certificate is issued and checked against
//! it) and the ServiceAccount signing key (`pki/sa.key`: every replica verifies every token) — is published
//! in the store as the Secret `kube-system/herd-control-plane-pki` (type `herd.dev/control-plane-pki`), as
//! kubeadm's `kubeadm-certs` Secret and k3s's bootstrap data carry it. The Secret is encrypted at rest when an
//! EncryptionConfiguration covers Secrets; reading it is as powerful as the CA itself (only
//! `system:masters` and roles granting Secrets in `kube-system` can).
//!
//! At start: a data dir without a CA adopts the store's (the files are written from the Secret); a data dir
//! with one publishes it when the store has none (create-if-absent: of two first starts racing, the loser
//! adopts the winner's, overwriting what it had just generated); a data dir whose CA or ServiceAccount key
//! differs from the store's refuses to start, naming both CA hashes. Serving certificates stay per replica
//! (each is issued afresh from the shared CA for the replica's own addresses).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herd_pki::{ClusterCa, TokenKey};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::objects::{Objects, core};

/// The Secret's namespace and name.
pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "herd-control-plane-pki";
/// The Secret's type.
pub const SECRET_TYPE: &str = "herd.dev/control-plane-pki";
/// The files shared, under `<data dir>/pki/`, and their keys in the Secret.
const FILES: [&str; 3] = ["ca.crt", "ca.key", "sa.key"];

/// The cluster's CA and ServiceAccount key for this replica: the store's when it has them (adopted into an
/// empty data dir), else the data dir's (created at first start), published to the store.
///
/// # Errors
/// A store or file failure, damaged key material, or ([`SharedPkiError::Refused`]) a data dir whose CA or
/// ServiceAccount key is not the one the store holds.
pub async fn load(
    objects: &Objects,
    data_dir: &Path,
) -> Result<(ClusterCa, TokenKey), SharedPkiError> {
    let dir = data_dir.join("pki");
    let stored = match stored(objects).await {
        Ok(stored) => stored,
        // A Secret this replica cannot read (sealed with a key its EncryptionConfiguration no longer
        // lists) does not stop a replica that has its own PKI: the data dir's is used, unchecked.
        Err(e) if dir.join("ca.crt").exists() => {
            tracing::warn!(error = %e, secret = %format!("{NAMESPACE}/{NAME}"),
                "cannot read the cluster's PKI from the store; using the data dir's");
            return Ok((
                ClusterCa::load_or_create(data_dir)?,
                TokenKey::load_or_create(data_dir)?,
            ));
        }
        Err(e) => return Err(e),
    };
    if !dir.join("ca.crt").exists()
        && let Some(files) = &stored
    {
        adopt(&dir, files)?;
        tracing::info!(secret = %format!("{NAMESPACE}/{NAME}"), "adopted the cluster's PKI from the store");
    } else if let Some(files) = &stored
        && !dir.join("sa.key").exists()
    {
        write(&dir, "sa.key", &files[2])?;
    }
    let created_here = !dir.join("ca.crt").exists();
    let ca = ClusterCa::load_or_create(data_dir)?;
    let key = TokenKey::load_or_create(data_dir)?;
    let stored = match stored {
        Some(files) => files,
        None => {
            let local = read_local(&dir)?;
            match publish(objects, &local).await? {
                None => return Ok((ca, key)),
                // Another replica published first: its PKI is the cluster's.
                Some(theirs) => {
                    if local[0] != theirs[0] && created_here {
                        adopt(&dir, &theirs)?;
                        tracing::info!(
                            "another replica published the cluster's PKI first; adopted it"
                        );
                        return Ok((
                            ClusterCa::load_or_create(data_dir)?,
                            TokenKey::load_or_create(data_dir)?,
                        ));
                    }
                    theirs
                }
            }
        }
    };
    check_same(&dir, &ca, &read_local(&dir)?, &stored)?;
    Ok((ca, key))
}

/// Why a replica's PKI cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SharedPkiError {
    #[error("reading or writing the Secret {NAMESPACE}/{NAME}: {0}")]
    Store(Box<ApiError>),
    #[error(transparent)]
    Pki(#[from] herd_pki::PkiError),
    /// The data dir's CA or ServiceAccount key is not the cluster's, or the Secret is damaged.
    #[error("{0}")]
    Refused(String),
}

/// The three files' texts in the Secret, if the store has it.
async fn stored(objects: &Objects) -> Result<Option<[String; 3]>, SharedPkiError> {
    let secret = objects
        .find(core("secrets"), NAMESPACE, NAME)
        .await
        .map_err(bootstrap_error)?;
    secret.map(|s| files_of(&s)).transpose()
}

fn bootstrap_error(source: ApiError) -> SharedPkiError {
    SharedPkiError::Store(Box::new(source))
}

fn files_of(secret: &Value) -> Result<[String; 3], SharedPkiError> {
    let file = |key: &str| -> Result<String, SharedPkiError> {
        let data = secret
            .get("data")
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                SharedPkiError::Refused(format!(
                    "the Secret {NAMESPACE}/{NAME} has no {key}; delete it to publish this replica's PKI"
                ))
            })?;
        let bytes = STANDARD.decode(data).map_err(|e| {
            SharedPkiError::Refused(format!("the Secret {NAMESPACE}/{NAME}'s {key}: {e}"))
        })?;
        String::from_utf8(bytes).map_err(|e| {
            SharedPkiError::Refused(format!("the Secret {NAMESPACE}/{NAME}'s {key}: {e}"))
        })
    };
    Ok([file(FILES[0])?, file(FILES[1])?, file(FILES[2])?])
}

fn read_local(dir: &Path) -> Result<[String; 3], SharedPkiError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(|source| SharedPkiError::Pki(herd_pki::PkiError::Io { path, source }))
    };
    Ok([read(FILES[0])?, read(FILES[1])?, read(FILES[2])?])
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), SharedPkiError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SharedPkiError::Pki(herd_pki::PkiError::Io { path, source })
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    let path = dir.join(name);
    let written = if name.ends_with(".key") {
        herd_atomic_file::write_private(&path, text.as_bytes())
    } else {
        herd_atomic_file::write(&path, text.as_bytes())
    };
    written.map_err(io(&path))
}

/// Writes the store's PKI into the data dir (keys first: a key without its certificate is a creation that
/// did not finish, never a CA).
fn adopt(dir: &Path, files: &[String; 3]) -> Result<(), SharedPkiError> {
    write(dir, "sa.key", &files[2])?;
    write(dir, "ca.key", &files[1])?;
    write(dir, "ca.crt", &files[0])
}

/// Creates the Secret from `local`; `Some(theirs)` when another replica's is there already.
async fn publish(
    objects: &Objects,
    local: &[String; 3],
) -> Result<Option<[String; 3]>, SharedPkiError> {
    let data: serde_json::Map<String, Value> = FILES
        .iter()
        .zip(local)
        .map(|(k, v)| ((*k).to_string(), json!(STANDARD.encode(v))))
        .collect();
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "type": SECRET_TYPE, "data": data});
    match objects
        .create(core("secrets"), Some(NAMESPACE), secret, false)
        .await
    {
        Ok(_) => {
            tracing::info!(secret = %format!("{NAMESPACE}/{NAME}"),
                "published the cluster's PKI for other control plane replicas");
            Ok(None)
        }
        Err(ApiError::AlreadyExists { .. }) => stored(objects).await,
        Err(e) => Err(bootstrap_error(e)),
    }
}

/// Refuses a data dir whose CA or ServiceAccount key is not the store's.
fn check_same(
    dir: &Path,
    ca: &ClusterCa,
    local: &[String; 3],
    stored: &[String; 3],
) -> Result<(), SharedPkiError> {
    let theirs = ClusterCa::from_pem(&stored[0], &stored[1])?;
    if theirs.ca_cert_hash() != ca.ca_cert_hash() {
        return Err(SharedPkiError::Refused(format!(
            "the cluster CA in {} ({}) is not the cluster's CA in the store's Secret {NAMESPACE}/{NAME} ({}); \
             a replica must use the cluster's PKI: remove {} to adopt it",
            dir.join("ca.crt").display(),
            ca.ca_cert_hash(),
            theirs.ca_cert_hash(),
            dir.display()
        )));
    }
    let (mine, theirs) = (
        TokenKey::from_pem(&local[2])?,
        TokenKey::from_pem(&stored[2])?,
    );
    if mine.key_id() != theirs.key_id() {
        return Err(SharedPkiError::Refused(format!(
            "the ServiceAccount signing key {} (key id {}) is not the cluster's in the store's Secret \
             {NAMESPACE}/{NAME} (key id {}); remove it to adopt the cluster's",
            dir.join("sa.key").display(),
            mine.key_id(),
            theirs.key_id()
        )));
    }
    Ok(())
}
