//! `herd bench …`: benchmarks that print figures.

use std::time::Instant;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Bench {
    /// Binds pods to simulated nodes (nodes that exist only as API objects) in a real store; prints binds/s.
    Scheduler {
        /// How many Ready nodes to create.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// How many pods to schedule.
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
    },
}

pub async fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Scheduler { nodes, pods } => {
            let started = Instant::now();
            let report = herd_control::scheduler::bench(nodes, pods).await?;
            println!(
                "scheduler: {} pods bound to {nodes} nodes in {:.2} s = {:.0} binds/s (setup included: {:.2} s total)",
                report.binds,
                report.seconds,
                report.binds_per_second,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}
