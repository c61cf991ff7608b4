//! `herd login REGISTRY -u USER (-p PASSWORD | --password-stdin)`: checks the credentials against the
//! registry and records them in the docker CLI's config file (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`, mode 0600), as `docker login` does; `herd push` and `docker` read them there.
//! HTTPS trusts the CA of `--kubeconfig`/`KUBECONFIG` besides the web roots (herd's embedded registry).

use anyhow::{anyhow, bail};

use super::errors::one_line;
use super::push::{PushCredentials, cluster_tls, docker_config_path, flag_credential};

/// `herd login REGISTRY`: prints `Login Succeeded`.
pub async fn login(
    registry: &str,
    insecure: &[String],
    flags: PushCredentials,
    kubeconfig: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let registry = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    if registry.is_empty() || registry.contains('/') {
        bail!("herd login takes a registry host[:port], not {registry:?}");
    }
    let Some(credential) = flag_credential(flags).await? else {
        bail!("herd login needs --username with --password or --password-stdin");
    };
    let tls = cluster_tls(kubeconfig)?;
    herd_oci_fetch::check_login(registry, &credential, insecure, &tls)
        .await
        .map_err(|e| anyhow!("cannot log in to {registry}: {}", one_line(&e)))?;
    let path = docker_config_path()
        .ok_or_else(|| anyhow!("no docker config directory: set DOCKER_CONFIG or HOME"))?;
    herd_oci_fetch::save_login(&path, registry, &credential)
        .map_err(|e| anyhow!("cannot save the credentials: {}", one_line(&e)))?;
    println!("Login Succeeded");
    Ok(())
}
