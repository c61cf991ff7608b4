//! Property/fuzz runs of herd's decoders: bad input must be an error, never a panic.
//!
//! Each [`Target`](targets::Target) generates inputs from a fixed seed — mutations of real valid seeds
//! ([`corpus`]) and random structure-aware values ([`mutate`]) — and runs them through the code the API server
//! and the node run on untrusted bytes: admission of JSON and YAML bodies of every served kind, the protobuf body
//! decoder, the four patch types, label and field selectors, quantities, and OCI manifests. A run reports, per
//! target, the inputs run, how many were accepted and refused, and every panic with its (minimized) input.
//!
//! ```
//! let corpus = herd_fuzz::corpus::Corpus::load();
//! for target in herd_fuzz::targets::TARGETS {
//!     let report = herd_fuzz::run(target, &corpus, 20, 1);
//!     assert!(report.panics.is_empty(), "{report}");
//! }
//! ```

pub mod corpus;
pub mod mutate;
pub mod rng;
pub mod targets;

use std::cell::RefCell;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use corpus::Corpus;
use rng::Rng;
use targets::Target;

/// One panicking input.
#[derive(Debug, Clone)]
pub struct Panic {
    /// Which input of the run (replayable with the same seed).
    pub index: u64,
    /// The panic message and location.
    pub message: String,
    /// The input as generated.
    pub input: Vec<u8>,
    /// A smaller input that still panics.
    pub minimized: Vec<u8>,
}

/// What a run of one target found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub target: &'static str,
    pub inputs: u64,
    pub accepted: u64,
    pub refused: u64,
    pub panics: Vec<Panic>,
}

/// Reports at most this many panics of a target in full (each one is minimized, which reruns it).
const MAX_PANICS_KEPT: usize = 5;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<16} {:>10} inputs {:>10} accepted {:>10} refused {:>6} panics",
            self.target,
            self.inputs,
            self.accepted,
            self.refused,
            self.panic_count()
        )?;
        for p in &self.panics {
            write!(
                f,
                "\n  input #{}: {}\n    minimized: {}\n    input:     {}",
                p.index,
                p.message,
                escape(&p.minimized),
                escape(&p.input)
            )?;
        }
        Ok(())
    }
}

impl Report {
    /// The panics found (those kept in full and the rest).
    pub fn panic_count(&self) -> u64 {
        self.inputs - self.accepted - self.refused
    }
}

/// Bytes as a Rust byte-string literal's content: printable ASCII as is, the rest escaped.
pub fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `input` through `target`: `Ok(accepted)`, or `Err(panic message)`.
fn run_one(target: &Target, input: &[u8]) -> Result<bool, String> {
    match panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input))) {
        Ok(result) => Ok(result.is_ok()),
        Err(_) => Err(LAST_PANIC
            .with(|l| l.borrow_mut().take())
            .unwrap_or_else(|| "panic".into())),
    }
}

/// Runs `inputs` inputs of `target` generated from `seed`. Panics are caught (the panic hook is replaced while
/// the run lasts, so they print nothing) and reported with their inputs.
pub fn run(target: &Target, corpus: &Corpus, inputs: u64, seed: u64) -> Report {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        LAST_PANIC.with(|l| *l.borrow_mut() = Some(info.to_string()));
    }));
    let mut report = Report {
        target: target.name,
        ..Report::default()
    };
    for index in 0..inputs {
        let mut rng = Rng::for_input(seed, target.name, index);
        let input = (target.generate)(&mut rng, corpus);
        report.inputs += 1;
        match run_one(target, &input) {
            Ok(true) => report.accepted += 1,
            Ok(false) => report.refused += 1,
            Err(message) => {
                if report.panics.len() < MAX_PANICS_KEPT {
                    let minimized = minimize(target, &input);
                    report.panics.push(Panic {
                        index,
                        message,
                        input,
                        minimized,
                    });
                }
            }
        }
    }
    panic::set_hook(previous);
    report
}

/// A smaller input that still panics: removes ever smaller chunks while the panic stays (delta debugging,
/// bounded).
fn minimize(target: &Target, input: &[u8]) -> Vec<u8> {
    let mut best = input.to_vec();
    let mut chunk = best.len().div_ceil(2).max(1);
    let mut budget = 4000;
    while chunk >= 1 && budget > 0 {
        let mut start = 0;
        let mut shrunk = false;
        while start < best.len() && budget > 0 {
            let end = (start + chunk).min(best.len());
            let mut candidate = best.clone();
            candidate.drain(start..end);
            budget -= 1;
            if run_one(target, &candidate).is_err() {
                best = candidate;
                shrunk = true;
            } else {
                start = end;
            }
        }
        if !shrunk {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    best
}
