//! `herd`: Kubernetes-style orchestration for WebAssembly workloads, in one rootless binary.
//!
//! `herd up` runs the control plane, a node agent, the Service proxy and an OCI registry in one process;
//! `herd control` and `herd node` run the halves on separate hosts; the other subcommands are a small
//! kubectl-like client.

mod bench;
mod cli;
mod host_ranges;
mod serve;
mod socket_lb;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the control plane allocates and frees many small JSON values, and
/// glibc's allocator took about a third of the scheduler's time in `herd bench scheduler`. Built without
/// asking for transparent huge pages (`no_thp`): memory it purges and touches again would otherwise come
/// back as 2 MiB pages zeroed by the kernel on each fault — a quarter of a scheduling pass's time here —
/// and a partly used huge page counts whole in RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "herd",
    version,
    about = "Kubernetes-style orchestration for WebAssembly workloads"
)]
struct Cli {
    #[command(flatten)]
    client: cli::ClientOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on this machine: control plane, one node, the proxy and an OCI registry.
    Up(serve::UpArgs),
    /// Run the control plane alone (API server, store, scheduler, controllers).
    Control(serve::ControlArgs),
    /// Run a node agent and its Service proxy against a control plane.
    Node(serve::NodeArgs),
    /// Benchmarks that print figures (speed targets live here, not in tests).
    #[command(subcommand)]
    Bench(bench::Bench),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Every pod holds sockets and files: lift the soft open-files limit to the hard one, as Go programs
    // (kubelet included) do at start-up. Failing to is not fatal.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    // Both rustls providers are linked (wasmtime-wasi-http wants ring, reqwest aws-lc-rs): pick one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(a) => serve::up(a).await,
            Command::Control(a) => serve::control(a).await,
            Command::Node(a) => serve::node(a, cli.client.kubeconfig).await,
            Command::Bench(b) => bench::run(b).await,
            Command::Client(cmd) => cli::run(cli.client, cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}
