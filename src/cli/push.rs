//! `herd push FILE IMAGE`: publishes a .wasm file as a Wasm OCI artifact, with credentials taken as
//! `oras push` and `docker push` take them: `--username`/`-u` with `--password`/`-p` or
//! `--password-stdin`, else the docker CLI's config file (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`, its `auths` entry for the image's registry), else the client certificate
//! of the kubeconfig given with `--kubeconfig`/`KUBECONFIG` (presented to the token endpoint of a
//! registry that challenges with `Bearer`: herd's embedded registry grants the admin's certificate
//! push), else anonymously. HTTPS trusts that kubeconfig's CA besides the web roots, so the embedded
//! registry's certificate verifies.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use herd_oci_fetch::{ClientIdentity, Credential, DockerConfig, Keyring, TlsOptions};
use tokio::io::AsyncReadExt as _;

use super::errors::one_line;

/// How `herd push` authenticates.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PushCredentials {
    /// Registry username (with --password or --password-stdin).
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Registry password (visible to other users in the process list: prefer --password-stdin).
    #[arg(short = 'p', long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the registry password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `herd push FILE IMAGE`: prints the manifest digest.
pub async fn push(
    file: &Path,
    image: &str,
    insecure: &[String],
    credentials: PushCredentials,
    kubeconfig: Option<&Path>,
) -> anyhow::Result<()> {
    let wasm = tokio::fs::read(file)
        .await
        .map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
    let credential = resolve(image, credentials).await?;
    let tls = cluster_tls(kubeconfig)?;
    let digest = herd_oci_fetch::push_with(&wasm, image, insecure, credential.as_ref(), &tls)
        .await
        .map_err(|e| anyhow!("cannot push {image}: {}", one_line(&e)))?;
    println!("{digest}");
    Ok(())
}

/// The TLS settings a kubeconfig gives: trust in its CA and its client certificate. Without a
/// kubeconfig, the web roots only; one herd cannot read as a cluster with a client certificate (a
/// `KUBECONFIG` list, a token user) is reported on stderr and not used.
pub(super) fn cluster_tls(kubeconfig: Option<&Path>) -> anyhow::Result<TlsOptions> {
    let Some(path) = kubeconfig else {
        return Ok(TlsOptions::default());
    };
    let read = herd_pki::Kubeconfig::read(path)
        .map_err(|e| one_line(&e))
        .and_then(|config| {
            let trusted = TlsOptions::trusting_pem(&config.ca_pem).map_err(|e| one_line(&e))?;
            Ok(TlsOptions {
                identity: Some(ClientIdentity {
                    cert_pem: config.client.cert_pem,
                    key_pem: config.client.key_pem,
                }),
                ..trusted
            })
        });
    match read {
        Ok(tls) => Ok(tls),
        Err(e) => {
            eprintln!(
                "warning: not using kubeconfig {} for the registry: {e}",
                path.display()
            );
            Ok(TlsOptions::default())
        }
    }
}

/// The flags' credentials, else the docker config's for the image's registry, else none.
async fn resolve(image: &str, flags: PushCredentials) -> anyhow::Result<Option<Credential>> {
    match flag_credential(flags).await? {
        Some(credential) => Ok(Some(credential)),
        None => Ok(docker_config_credential(image).await),
    }
}

/// The credential the flags give (`-u` with `-p` or `--password-stdin`), or none.
pub(super) async fn flag_credential(flags: PushCredentials) -> anyhow::Result<Option<Credential>> {
    match (flags.username, flags.password, flags.password_stdin) {
        (Some(user), Some(password), false) => Ok(Some(Credential::new(user, password))),
        (Some(user), None, true) => {
            let mut password = String::new();
            tokio::io::stdin()
                .read_to_string(&mut password)
                .await
                .map_err(|e| anyhow!("reading the password from standard input: {e}"))?;
            let password = password.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                bail!("--password-stdin read an empty password");
            }
            Ok(Some(Credential::new(user, password)))
        }
        (Some(_), None, false) => bail!("--username needs --password or --password-stdin"),
        (None, Some(_), _) | (None, None, true) => {
            bail!("--password and --password-stdin need --username")
        }
        (_, Some(_), true) => bail!("--password and --password-stdin cannot be used together"),
        (None, None, false) => Ok(None),
    }
}

/// The docker CLI's config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub(super) fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// The first credential the docker config has for `image`'s registry; a file that is missing has
/// none, one that does not parse is reported on stderr and ignored (as the docker CLI warns).
async fn docker_config_credential(image: &str) -> Option<Credential> {
    let path = docker_config_path()?;
    let bytes = tokio::fs::read(&path).await.ok()?;
    match DockerConfig::from_config_json(&bytes) {
        Ok(config) => {
            let mut keyring = Keyring::default();
            keyring.add(&config);
            keyring.lookup(image).into_iter().next()
        }
        Err(e) => {
            eprintln!("warning: ignoring {}: {}", path.display(), one_line(&e));
            None
        }
    }
}
