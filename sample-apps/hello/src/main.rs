//! `hello` — a WASI preview 1 command (wasm32-wasip1, a plain `fn main`).
//!
//! Prints `Hello from herd!`, then its arguments (without argv[0]) on one line `args: [...]`, then each
//! environment variable as `env NAME=value`, sorted by name. Three flags change how it ends:
//! `--exit=N` exits with status N (to fail on purpose for restart-policy demos), `--sleep-ms=N` sleeps
//! N milliseconds before exiting, and `--fail-until-unix-ms=T` exits with status 1 (after the sleep) while
//! the wall clock is before T, Unix time in milliseconds, and behaves as without it from then on (to show
//! a Job's retries). `--alloc-mib=N` first allocates and touches N MiB, one MiB at a time, printing how far it
//! got (a memory hog for limit demos: under a smaller `limits.memory` it never finishes). `--forever` makes
//! the sleep endless (a program that keeps running until it is stopped), and `--every-ms=N` prints `tick K`
//! every N milliseconds while it sleeps (a running program with steady output, as `herd bench deploy`
//! starts: `--every-ms=100 --forever`). `--append=PATH=LINE` appends `LINE` to the file `PATH` (a file in a
//! volume) and prints the whole file after a `file PATH:` line, so a pod whose volume outlives it shows what
//! every earlier run wrote. Any other argument is only printed.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How the program ends, read from its arguments.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    exit_code: u8,
    sleep: Duration,
    /// Fail (status 1) while the wall clock is before this, in Unix milliseconds.
    fail_until_unix_ms: Option<u64>,
    /// MiB to allocate and touch before anything else.
    alloc_mib: u32,
    /// Sleep without end instead of for `sleep`.
    forever: bool,
    /// Print a `tick K` line this often while sleeping.
    every: Option<Duration>,
    /// Append a line to a file and print the file: (path, line).
    append: Option<(String, String)>,
}

impl Options {
    /// When the `k`th tick (from 1) is due, counted from the start of the sleep; `None` once the sleep is over
    /// (or without `--every-ms`).
    fn tick_due(&self, k: u32) -> Option<Duration> {
        let due = self.every?.checked_mul(k)?;
        (self.forever || due <= self.sleep).then_some(due)
    }

    /// The exit status at `now_unix_ms`.
    fn exit_code_at(&self, now_unix_ms: u64) -> u8 {
        match self.fail_until_unix_ms {
            Some(until) if now_unix_ms < until => 1,
            _ => self.exit_code,
        }
    }
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    for arg in args {
        if let Some(value) = arg.strip_prefix("--exit=") {
            options.exit_code = value
                .parse()
                .map_err(|_| format!("--exit wants a status 0-255, got {value:?}"))?;
        } else if let Some(value) = arg.strip_prefix("--sleep-ms=") {
            let ms: u64 = value
                .parse()
                .map_err(|_| format!("--sleep-ms wants milliseconds, got {value:?}"))?;
            options.sleep = Duration::from_millis(ms);
        } else if let Some(value) = arg.strip_prefix("--fail-until-unix-ms=") {
            let ms: u64 = value.parse().map_err(|_| {
                format!("--fail-until-unix-ms wants Unix milliseconds, got {value:?}")
            })?;
            options.fail_until_unix_ms = Some(ms);
        } else if let Some(value) = arg.strip_prefix("--alloc-mib=") {
            options.alloc_mib = value
                .parse()
                .map_err(|_| format!("--alloc-mib wants a number of MiB, got {value:?}"))?;
        } else if let Some(value) = arg.strip_prefix("--append=") {
            let (path, line) = value
                .split_once('=')
                .ok_or_else(|| format!("--append wants PATH=LINE, got {value:?}"))?;
            options.append = Some((path.to_string(), line.to_string()));
        } else if arg == "--forever" {
            options.forever = true;
        } else if let Some(value) = arg.strip_prefix("--every-ms=") {
            let ms: u64 =
                value.parse().ok().filter(|ms| *ms > 0).ok_or_else(|| {
                    format!("--every-ms wants milliseconds above 0, got {value:?}")
                })?;
            options.every = Some(Duration::from_millis(ms));
        }
    }
    Ok(options)
}

/// The text printed to stdout: greeting, args line, sorted env lines.
fn report(args: &[String], mut env: Vec<(String, String)>) -> String {
    env.sort();
    let mut out = format!("Hello from herd!\nargs: {args:?}\n");
    for (name, value) in env {
        out.push_str(&format!("env {name}={value}\n"));
    }
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: Vec<(String, String)> = std::env::vars().collect();

    let mut stdout = std::io::stdout().lock();
    // A closed stdout must not stop the requested exit status or sleep.
    let _ = stdout.write_all(report(&args, env).as_bytes());
    let _ = stdout.flush();
    drop(stdout);

    match parse_options(&args) {
        Ok(options) => {
            if let Some((path, line)) = &options.append
                && let Err(e) = append(path, line)
            {
                eprintln!("hello: {path}: {e}");
                return ExitCode::from(1);
            }
            hog(options.alloc_mib);
            linger(&options);
            let now_unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let code = options.exit_code_at(now_unix_ms);
            if code == 1 && options.fail_until_unix_ms.is_some_and(|t| now_unix_ms < t) {
                eprintln!(
                    "hello: failing on purpose until {now_unix_ms} reaches the requested time"
                );
            }
            ExitCode::from(code)
        }
        Err(message) => {
            eprintln!("hello: {message}");
            ExitCode::from(2)
        }
    }
}

/// Appends `line` to the file at `path` (created if missing) and prints the file's content.
fn append(path: &str, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{line}")?;
    drop(file);
    let content = std::fs::read_to_string(path)?;
    print!("file {path}:\n{content}");
    std::io::stdout().flush()
}

/// Sleeps for `--sleep-ms` (or for ever with `--forever`), printing a tick line when one is due.
fn linger(options: &Options) {
    let start = Instant::now();
    let mut k = 1;
    while let Some(due) = options.tick_due(k) {
        std::thread::sleep((start + due).saturating_duration_since(Instant::now()));
        println!("tick {k}");
        k += 1;
    }
    if options.forever {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    std::thread::sleep((start + options.sleep).saturating_duration_since(Instant::now()));
}

/// Allocates and touches `mib` MiB, reporting each 16 MiB (the memory is kept until exit).
fn hog(mib: u32) {
    let mut held: Vec<Vec<u8>> = Vec::new();
    for i in 1..=mib {
        held.push(vec![1u8; 1 << 20]);
        if i % 16 == 0 || i == mib {
            println!("allocated {i} MiB");
        }
    }
    std::hint::black_box(&held);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn report_lists_args_then_sorted_env() {
        let env = vec![("ZED".into(), "1".into()), ("ALPHA".into(), "a=b".into())];
        assert_eq!(
            report(&strings(&["x", "--exit=3"]), env),
            "Hello from herd!\nargs: [\"x\", \"--exit=3\"]\nenv ALPHA=a=b\nenv ZED=1\n"
        );
    }

    #[test]
    fn flags_set_exit_code_and_sleep() {
        let options = parse_options(&strings(&[
            "a",
            "--exit=7",
            "--sleep-ms=250",
            "--alloc-mib=3",
        ]));
        assert_eq!(
            options,
            Ok(Options {
                exit_code: 7,
                sleep: Duration::from_millis(250),
                fail_until_unix_ms: None,
                alloc_mib: 3,
                forever: false,
                every: None,
                append: None,
            })
        );
        let appending = parse_options(&strings(&["--append=/data/log=run 1=ok"])).unwrap();
        assert_eq!(
            appending.append,
            Some(("/data/log".to_string(), "run 1=ok".to_string()))
        );
        assert_eq!(parse_options(&strings(&["plain"])), Ok(Options::default()));
    }

    #[test]
    fn malformed_flags_are_errors() {
        assert!(parse_options(&strings(&["--exit=300"])).is_err());
        assert!(parse_options(&strings(&["--exit=x"])).is_err());
        assert!(parse_options(&strings(&["--sleep-ms=-1"])).is_err());
        assert!(parse_options(&strings(&["--fail-until-unix-ms=soon"])).is_err());
        assert!(parse_options(&strings(&["--fail-until-unix-ms=-5"])).is_err());
        assert!(parse_options(&strings(&["--alloc-mib=lots"])).is_err());
        assert!(parse_options(&strings(&["--every-ms=0"])).is_err());
        assert!(parse_options(&strings(&["--every-ms=often"])).is_err());
        assert!(parse_options(&strings(&["--append=no-line"])).is_err());
    }

    #[test]
    fn fail_until_fails_before_the_time_and_not_after() {
        let options = parse_options(&strings(&["--fail-until-unix-ms=1700000000000"])).unwrap();
        assert_eq!(options.fail_until_unix_ms, Some(1_700_000_000_000));
        assert_eq!(options.exit_code_at(1_699_999_999_999), 1);
        assert_eq!(options.exit_code_at(1_700_000_000_000), 0);
        let with_exit = parse_options(&strings(&["--exit=3", "--fail-until-unix-ms=10"])).unwrap();
        assert_eq!(with_exit.exit_code_at(9), 1);
        assert_eq!(with_exit.exit_code_at(11), 3);
    }

    #[test]
    fn ticks_fall_within_the_sleep_or_go_on_for_ever() {
        let ticking = parse_options(&strings(&["--sleep-ms=250", "--every-ms=100"])).unwrap();
        assert_eq!(ticking.every, Some(Duration::from_millis(100)));
        assert_eq!(ticking.tick_due(1), Some(Duration::from_millis(100)));
        assert_eq!(ticking.tick_due(2), Some(Duration::from_millis(200)));
        assert_eq!(ticking.tick_due(3), None);
        let forever = parse_options(&strings(&["--every-ms=100", "--forever"])).unwrap();
        assert!(forever.forever);
        assert_eq!(
            forever.tick_due(1_000_000),
            Some(Duration::from_secs(100_000))
        );
        let silent = parse_options(&strings(&["--forever"])).unwrap();
        assert_eq!(silent.tick_due(1), None);
    }
}
