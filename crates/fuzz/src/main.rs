//! `herd-fuzz`: runs every fuzz target (or one) for a fixed number of inputs from a fixed seed and prints, per
//! target, the inputs run, accepted, refused and panicked. Exits non-zero when any input panicked.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use herd_fuzz::corpus::Corpus;
use herd_fuzz::targets::TARGETS;

#[derive(Parser)]
#[command(about = "Fuzz herd's decoders: bad input must be an error, never a panic")]
struct Args {
    /// Inputs per target.
    #[arg(long, default_value_t = 100_000)]
    inputs: u64,
    /// The seed inputs are generated from (the same seed gives the same inputs).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run only these targets (repeatable).
    #[arg(long)]
    target: Vec<String>,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    for name in &args.target {
        if !TARGETS.iter().any(|t| t.name == name) {
            let names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
            anyhow::bail!("no target {name:?}; the targets are {}", names.join(", "));
        }
    }
    let corpus = Corpus::load();
    println!(
        "seed {}, {} inputs per target; corpus: {} objects, {} protobuf bodies, {} manifests",
        args.seed,
        args.inputs,
        corpus.objects.len(),
        corpus.protobuf.len(),
        corpus.manifests.len()
    );
    let started = Instant::now();
    let (mut total, mut panics) = (0, 0);
    for target in TARGETS
        .iter()
        .filter(|t| args.target.is_empty() || args.target.iter().any(|n| n == t.name))
    {
        let t = Instant::now();
        let report = herd_fuzz::run(target, &corpus, args.inputs, args.seed);
        println!("{report} ({:.1} s)", t.elapsed().as_secs_f64());
        total += report.inputs;
        panics += report.panic_count();
    }
    println!(
        "total: {total} inputs, {panics} panics in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(if panics == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
