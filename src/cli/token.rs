//! `herd token create|list|delete`: bootstrap tokens, as `kubeadm token` manages them — Secrets
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`. `create` prints the command
//! a new node joins with (kubeadm's `--print-join-command`): the API server of the kubeconfig, the token and
//! the pin of the kubeconfig's CA (kubeadm's `sha256:` hash of its public key).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use herd_pki::BootstrapToken;
use herd_pki::bootstrap_token::{DEFAULT_NODE_TOKEN_GROUP, SECRET_PREFIX, SECRET_TYPE};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use super::ClientOpts;
use super::errors::from_kube;

const NAMESPACE: &str = "kube-system";

/// `herd token …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a bootstrap token and print the `herd node` command that joins a node with it.
    Create {
        /// How long the token lives (`24h`, `30m`, `0` for ever), kubeadm's default 24h.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// A human-friendly description of the token's use.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the bootstrap tokens (kubeadm's columns).
    List,
    /// Delete a bootstrap token (its ID, or the whole ID.SECRET).
    Delete {
        /// The token ID or ID.SECRET.
        token: String,
    },
}

/// Runs a `herd token` subcommand.
///
/// # Errors
/// One line: a bad flag, an unusable kubeconfig, or the API server's answer.
pub async fn run(opts: &ClientOpts, command: TokenCommand) -> anyhow::Result<()> {
    let config = super::config(opts).await?;
    let (client, _) = super::connect(opts).await?;
    let secrets: Api<Secret> = Api::namespaced(client, NAMESPACE);
    match command {
        TokenCommand::Create { ttl, description } => {
            let ttl = parse_ttl(&ttl)?;
            let token = BootstrapToken::generate();
            let mut data = BTreeMap::from([
                ("token-id".to_string(), token.id.clone()),
                ("token-secret".to_string(), token.secret.clone()),
                (
                    "usage-bootstrap-authentication".to_string(),
                    "true".to_string(),
                ),
                ("usage-bootstrap-signing".to_string(), "true".to_string()),
                (
                    "auth-extra-groups".to_string(),
                    DEFAULT_NODE_TOKEN_GROUP.to_string(),
                ),
            ]);
            if let Some(ttl) = ttl {
                let at = jiff::Timestamp::now()
                    + jiff::SignedDuration::try_from(ttl).context("--ttl")?;
                data.insert(
                    "expiration".into(),
                    at.round(jiff::Unit::Second)?.to_string(),
                );
            }
            if let Some(description) = description {
                data.insert("description".into(), description);
            }
            let mut secret = Secret {
                type_: Some(SECRET_TYPE.into()),
                string_data: Some(data),
                ..Secret::default()
            };
            secret.metadata.name = Some(token.secret_name());
            secret.metadata.namespace = Some(NAMESPACE.into());
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .map_err(from_kube)?;
            let server = config.cluster_url.to_string();
            let server = server.trim_end_matches('/');
            let ca = config
                .root_cert
                .as_ref()
                .and_then(|certs| certs.first())
                .ok_or_else(|| anyhow!("the kubeconfig names no cluster CA to pin"))?;
            let hash = herd_pki::CaCertHash::of_cert(&rustls::pki_types::CertificateDer::from(
                ca.clone(),
            ))?;
            println!("herd node --server {server} --token {token} --ca-cert-hash {hash}");
            Ok(())
        }
        TokenCommand::List => {
            let list = secrets
                .list(&ListParams::default())
                .await
                .map_err(from_kube)?;
            let now = jiff::Timestamp::now();
            let mut rows = vec![[
                "TOKEN".to_string(),
                "TTL".into(),
                "EXPIRES".into(),
                "USAGES".into(),
                "DESCRIPTION".into(),
                "EXTRA GROUPS".into(),
            ]];
            for secret in list.items {
                if secret.type_.as_deref() != Some(SECRET_TYPE) {
                    continue;
                }
                let data = |key: &str| -> String {
                    secret
                        .data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .and_then(|v| String::from_utf8(v.0.clone()).ok())
                        .unwrap_or_default()
                };
                let (id, value) = (data("token-id"), data("token-secret"));
                if secret.metadata.name.as_deref() != Some(&format!("{SECRET_PREFIX}{id}")) {
                    continue;
                }
                let expiration = data("expiration");
                let (ttl, expires) = match expiration.parse::<jiff::Timestamp>() {
                    Ok(at) if at <= now => ("<invalid>".to_string(), expiration.clone()),
                    Ok(at) => (human(at.duration_since(now)), expiration.clone()),
                    Err(_) => ("<forever>".to_string(), "<never>".to_string()),
                };
                let usages: Vec<&str> = [
                    ("usage-bootstrap-authentication", "authentication"),
                    ("usage-bootstrap-signing", "signing"),
                ]
                .into_iter()
                .filter(|(key, _)| data(key) == "true")
                .map(|(_, name)| name)
                .collect();
                let description = data("description");
                rows.push([
                    format!("{id}.{value}"),
                    ttl,
                    expires,
                    usages.join(","),
                    if description.is_empty() {
                        "<none>".into()
                    } else {
                        description
                    },
                    data("auth-extra-groups"),
                ]);
            }
            print_table(&rows);
            Ok(())
        }
        TokenCommand::Delete { token } => {
            let id = token.split_once('.').map_or(token.as_str(), |(id, _)| id);
            if !herd_pki::bootstrap_token::valid_id(id) {
                bail!(
                    "given token {token:?} didn't match pattern \"[a-z0-9]{{6}}\" or \"[a-z0-9]{{6}}.[a-z0-9]{{16}}\""
                );
            }
            secrets
                .delete(&format!("{SECRET_PREFIX}{id}"), &DeleteParams::default())
                .await
                .map_err(from_kube)?;
            println!("bootstrap token \"{id}\" deleted");
            Ok(())
        }
    }
}

/// `24h`, `90m`, `30s`, `1h30m`, or `0` (never expires).
fn parse_ttl(text: &str) -> anyhow::Result<Option<Duration>> {
    let bad = || anyhow!("--ttl {text:?}: use a duration such as 24h, 30m or 0 for no expiry");
    if text.trim() == "0" {
        return Ok(None);
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Some(Duration::from_secs(total)))
}

/// kubeadm's TTL column: the largest unit, rounded (`23h`, `59m`, `10s`).
fn human(d: jiff::SignedDuration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h", s / 3600)
    } else if s >= 60 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Columns separated by at least three spaces, as kubectl's tab writer lays them out.
fn print_table(rows: &[[String; 6]]) {
    let mut widths = [0usize; 6];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_as_kubeadm_takes_them() {
        assert_eq!(parse_ttl("24h").unwrap(), Some(Duration::from_secs(86_400)));
        assert_eq!(
            parse_ttl("1h30m").unwrap(),
            Some(Duration::from_secs(5_400))
        );
        assert_eq!(parse_ttl("0").unwrap(), None);
        assert!(parse_ttl("soon").is_err());
        assert!(parse_ttl("5").is_err());
    }
}
