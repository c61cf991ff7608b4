//! The client half of the `herd` CLI: `apply`, `get`, `delete`, `logs`, `push`, `login`, `token`.
//!
//! Everything but `push` and `login` talks to the API server only through the `kube` client, with
//! `Api<DynamicObject>` typed by herd-api's resource table. Failures come back as one line, in
//! kubectl's words where kubectl has some (`Error from server (NotFound): pods "x" not found`).

mod apply;
mod errors;
mod get;
mod login;
mod manifest;
mod push;
mod token;

use std::path::PathBuf;

use anyhow::{Context as _, anyhow, bail};
use futures::AsyncReadExt as _;
use herd_api::resources::ResourceInfo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, LogParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::io::AsyncWriteExt as _;

use errors::{from_kube, one_line};

/// Options every client subcommand shares.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientOpts {
    /// Kubeconfig to use (several may be joined with `:`); without it, kube's usual inference
    /// (`~/.kube/config`, then in-cluster).
    #[arg(long, env = "KUBECONFIG", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace; defaults to the kubeconfig context's, else `default`.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

/// The client subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClientCommand {
    /// Create or update objects from a YAML/JSON file (several documents separated by ---) by
    /// server-side apply; `-f -` reads stdin, `-f DIR` every .yaml/.yml/.json file in it.
    Apply {
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Take over fields another field manager owns instead of failing on the conflict.
        #[arg(long)]
        force_conflicts: bool,
    },
    /// Show one object or a list of them.
    Get {
        /// Resource type: `pods`, `po`, `deployments.apps`, … or `TYPE/NAME`.
        resource: String,
        /// Object name; without it, the list.
        name: Option<String>,
        /// List across all namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Label selector, e.g. `app=web,tier!=db`.
        #[arg(short = 'l', long)]
        selector: Option<String>,
        /// Output format.
        #[arg(short = 'o', long, value_parser = ["wide", "yaml", "json", "name"])]
        output: Option<String>,
    },
    /// Delete an object by type and name, or the objects of a manifest with -f.
    Delete {
        /// Resource type, or `TYPE/NAME`.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        resource: Option<String>,
        /// Object name.
        name: Option<String>,
        #[arg(short = 'f', long)]
        file: Option<PathBuf>,
    },
    /// Print the logs of a pod's container.
    Logs {
        /// Pod name.
        pod: String,
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Keep streaming new output.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Push a .wasm file to an OCI registry as a Wasm artifact; prints the manifest digest. Credentials:
    /// -u with -p or --password-stdin, else the docker CLI's config.json entry for the registry, else
    /// the client certificate of --kubeconfig (herd's embedded registry lets the admin's push); HTTPS
    /// trusts that kubeconfig's CA besides the web roots.
    Push {
        /// The .wasm file (core module or component).
        file: PathBuf,
        /// Image reference, e.g. `127.0.0.1:5000/hello:v1`.
        image: String,
        /// Registry (`host:port`) to speak plain HTTP to; loopback registries are unless they answer a
        /// TLS handshake.
        #[arg(long = "insecure-registry")]
        insecure: Vec<String>,
        #[command(flatten)]
        credentials: push::PushCredentials,
    },
    /// Manage bootstrap tokens (as `kubeadm token`): `create` prints the `herd node` command that joins a
    /// node with one.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Check credentials for a registry and save them in the docker CLI's config.json (0600), as
    /// `docker login` does; `herd push` uses them.
    Login {
        /// The registry, `host[:port]`.
        registry: String,
        /// Registry (`host:port`) to speak plain HTTP to; loopback registries are unless they answer a
        /// TLS handshake.
        #[arg(long = "insecure-registry")]
        insecure: Vec<String>,
        #[command(flatten)]
        credentials: push::PushCredentials,
    },
}

/// Runs one client subcommand.
///
/// # Errors
///
/// One line fit to print after `error: `: the API server's `Status` as kubectl shows it, or why
/// the manifest, kubeconfig, registry or connection failed.
pub async fn run(opts: ClientOpts, cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Apply {
            file,
            force_conflicts,
        } => {
            let (client, namespace) = connect(&opts).await?;
            apply::apply_file(&client, &file, &namespace, force_conflicts).await
        }
        ClientCommand::Get {
            resource,
            name,
            all_namespaces,
            selector,
            output,
        } => {
            let (client, namespace) = connect(&opts).await?;
            let request = get::GetRequest {
                resource,
                name,
                namespace,
                all_namespaces,
                selector,
                output: get::Output::parse(output.as_deref())?,
            };
            get::get(&client, request).await
        }
        ClientCommand::Delete {
            resource,
            name,
            file,
        } => {
            let (client, namespace) = connect(&opts).await?;
            match (file, resource) {
                (Some(file), _) => apply::delete_file(&client, &file, &namespace).await,
                (None, Some(resource)) => {
                    let (info, name) = get::split_type_and_name(&resource, name.as_deref())?;
                    let name = name.ok_or_else(|| {
                        anyhow!("resource(s) were provided, but no name was specified")
                    })?;
                    let ns = info.namespaced.then_some(namespace.as_str());
                    apply::delete(&client, info, &name, ns).await
                }
                (None, None) => {
                    bail!("you must provide one or more resources by argument or filename")
                }
            }
        }
        ClientCommand::Logs {
            pod,
            container,
            follow,
        } => {
            let (client, namespace) = connect(&opts).await?;
            logs(client, &namespace, &pod, container, follow).await
        }
        ClientCommand::Push {
            file,
            image,
            insecure,
            credentials,
        } => {
            push::push(
                &file,
                &image,
                &insecure,
                credentials,
                opts.kubeconfig.as_deref(),
            )
            .await
        }
        ClientCommand::Token { command } => token::run(&opts, command).await,
        ClientCommand::Login {
            registry,
            insecure,
            credentials,
        } => {
            login::login(
                &registry,
                &insecure,
                credentials,
                opts.kubeconfig.as_deref(),
            )
            .await
        }
    }
}

/// Builds the client from `--kubeconfig`/`$KUBECONFIG` or kube's inference, and picks the
/// namespace: `-n`, else the kubeconfig context's, else `default`.
async fn connect(opts: &ClientOpts) -> anyhow::Result<(Client, String)> {
    let config = config(opts).await?;
    let namespace = opts
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let mut config = config;
    if let Ok(agent) = hyper::header::HeaderValue::from_str(&user_agent("herd")) {
        config.headers.push((hyper::header::USER_AGENT, agent));
    }
    let client = Client::try_from(config).map_err(from_kube)?;
    Ok((client, namespace))
}

/// The client configuration of `--kubeconfig`/`$KUBECONFIG` (files merged) or kube's inference.
async fn config(opts: &ClientOpts) -> anyhow::Result<Config> {
    let paths: Vec<PathBuf> = opts
        .kubeconfig
        .as_deref()
        .map(|p| std::env::split_paths(p.as_os_str()).collect())
        .unwrap_or_default();
    let paths: Vec<PathBuf> = paths
        .into_iter()
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    let config = if paths.is_empty() {
        Config::infer().await.map_err(|e| {
            anyhow!(
                "no kubeconfig found (pass --kubeconfig or set KUBECONFIG): {}",
                one_line(&e)
            )
        })?
    } else {
        let mut merged = Kubeconfig::default();
        for path in &paths {
            let file = Kubeconfig::read_from(path).map_err(|e| {
                anyhow!(
                    "cannot load kubeconfig {}: {}",
                    path.display(),
                    one_line(&e)
                )
            })?;
            merged = merged.merge(file).map_err(|e| {
                anyhow!(
                    "cannot merge kubeconfig {}: {}",
                    path.display(),
                    one_line(&e)
                )
            })?;
        }
        Config::from_custom_kubeconfig(merged, &KubeConfigOptions::default())
            .await
            .map_err(|e| anyhow!("invalid kubeconfig: {}", one_line(&e)))?
    };
    Ok(config)
}

/// The user agent of a herd component, shaped as Kubernetes' clients shape theirs
/// (`kubectl/v1.37.1 (linux/amd64) kubernetes/…`): the API server names the writer after what comes
/// before the first `/`.
pub fn user_agent(component: &str) -> String {
    format!(
        "{component}/v{} ({}/{}) herd",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// The dynamic API of a resource type, in `namespace` or across all namespaces (and for
/// cluster-scoped types) with `None`.
fn api(client: &Client, info: &ResourceInfo, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = api_resource(info);
    match namespace {
        Some(ns) if info.namespaced => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    }
}

/// herd-api's entry for a resource type, as kube's dynamic `ApiResource`.
fn api_resource(info: &ResourceInfo) -> ApiResource {
    ApiResource {
        group: info.group.to_string(),
        version: info.version.to_string(),
        api_version: info.api_version(),
        kind: info.kind.to_string(),
        plural: info.plural.to_string(),
    }
}

/// Streams a container's log to stdout until the server ends it (with `follow`, when the
/// container stops). A closed stdout (`| head`) ends it quietly.
async fn logs(
    client: Client,
    namespace: &str,
    pod: &str,
    container: Option<String>,
    follow: bool,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let params = LogParams {
        container,
        follow,
        ..LogParams::default()
    };
    let stream = pods.log_stream(pod, &params).await.map_err(from_kube)?;
    let mut stream = std::pin::pin!(stream);
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| anyhow!("reading the log of pod {pod}: {e}"))?;
        if n == 0 {
            break;
        }
        let written = async {
            stdout.write_all(&buf[..n]).await?;
            stdout.flush().await
        };
        match written.await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e).context("writing to stdout"),
        }
    }
    Ok(())
}
