//! `hello` — a WASI preview 1 command (wasm32-wasip1, a plain `fn main`).
//!
//! Prints `Hello from herd!`, then its arguments (without argv[0]) on one line `args: [...]`, then each
//! environment variable as `env NAME=value`, sorted by name. Two flags change how it ends:
//! `--exit=N` exits with status N (to fail on purpose for restart-policy demos) and `--sleep-ms=N` sleeps
//! N milliseconds before exiting. Any other argument is only printed.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

/// How the program ends, read from its arguments.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    exit_code: u8,
    sleep: Duration,
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
            std::thread::sleep(options.sleep);
            ExitCode::from(options.exit_code)
        }
        Err(message) => {
            eprintln!("hello: {message}");
            ExitCode::from(2)
        }
    }
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
        let options = parse_options(&strings(&["a", "--exit=7", "--sleep-ms=250"]));
        assert_eq!(
            options,
            Ok(Options {
                exit_code: 7,
                sleep: Duration::from_millis(250)
            })
        );
        assert_eq!(parse_options(&strings(&["plain"])), Ok(Options::default()));
    }

    #[test]
    fn malformed_flags_are_errors() {
        assert!(parse_options(&strings(&["--exit=300"])).is_err());
        assert!(parse_options(&strings(&["--exit=x"])).is_err());
        assert!(parse_options(&strings(&["--sleep-ms=-1"])).is_err());
    }
}
