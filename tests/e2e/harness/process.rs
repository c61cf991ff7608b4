//! One `herd` child process: output captured to files, the ready line parsed, stopped with SIGTERM.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{HERD, tail};

/// How long `herd` may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `herd` may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The fields of `herd is ready api=… registry=… kubeconfig=…`.
#[derive(Debug, Clone)]
pub struct ReadyLine {
    pub api: String,
    /// `None` for `registry=off` or when the field is absent (`herd control`).
    pub registry: Option<String>,
    pub kubeconfig: Option<PathBuf>,
}

/// A running `herd` (directly, or under `runuser -u nobody`).
pub struct HerdProcess {
    child: Child,
    /// The pid of `herd` itself (the child of `runuser` when unprivileged).
    pub pid: u32,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    /// Length of the stderr file before this process started (files are appended to across restarts).
    stderr_start: u64,
    pub label: String,
}

impl HerdProcess {
    /// Spawns `herd ARGS`, appending its output to `<log_dir>/<label>.stdout|stderr`.
    pub fn spawn(
        label: &str,
        args: &[String],
        log_dir: &Path,
        as_nobody: Option<&Path>,
    ) -> HerdProcess {
        let stdout_path = log_dir.join(format!("{label}.stdout"));
        let stderr_path = log_dir.join(format!("{label}.stderr"));
        let stderr_start = std::fs::metadata(&stderr_path)
            .map(|m| m.len())
            .unwrap_or(0);
        let open = |p: &Path| -> File {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
        };
        let mut cmd = match as_nobody {
            None => Command::new(HERD),
            Some(home) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", "nobody", "--", "env"])
                    .arg(format!("HOME={}", home.display()))
                    .arg(HERD);
                cmd
            }
        };
        cmd.args(args)
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1")
            .env("NO_PROXY", "127.0.0.0/8,localhost")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(open(&stdout_path))
            .stderr(open(&stderr_path));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {HERD}: {e}"));
        let pid = match as_nobody {
            None => child.id(),
            Some(_) => child_of(child.id()),
        };
        HerdProcess {
            child,
            pid,
            stdout_path,
            stderr_path,
            stderr_start,
            label: label.to_string(),
        }
    }

    /// This process's stderr so far.
    pub fn stderr(&self) -> String {
        let all = std::fs::read(&self.stderr_path).unwrap_or_default();
        let start = (self.stderr_start as usize).min(all.len());
        strip_ansi(&String::from_utf8_lossy(&all[start..]))
    }

    /// The last lines of this process's output, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- {} stderr ({}) ---\n{}\n--- {} stdout ---\n{}",
            self.label,
            self.stderr_path.display(),
            tail(&self.stderr_path, 150),
            self.label,
            tail(&self.stdout_path, 30)
        )
    }

    /// Whether the process has exited (and with what).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the `herd is ready` line; panics with the logs if herd exits or takes too long.
    pub async fn wait_ready(&mut self) -> ReadyLine {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(ready) = parse_ready_line(&self.stderr()) {
                return ready;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited with {status} before it was ready\n{}",
                    self.label,
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} printed no `herd is ready` line within {READY_TIMEOUT:?}\n{}",
                    self.label,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit. Returns the status and how long the exit took, or `None`
    /// if it did not exit within the timeout (it is then killed).
    pub fn terminate(&mut self) -> Option<(ExitStatus, Duration)> {
        if let Some(status) = self.exited() {
            return Some((status, Duration::ZERO));
        }
        let started = Instant::now();
        send_signal("TERM", self.pid);
        while started.elapsed() < STOP_TIMEOUT {
            if let Some(status) = self.exited() {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        send_signal("KILL", self.pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// SIGTERM, then asserts a prompt exit with status 0.
    pub fn stop(&mut self) -> Duration {
        match self.terminate() {
            Some((status, took)) => {
                assert!(
                    status.success(),
                    "{} exited with {status} after SIGTERM\n{}",
                    self.label,
                    self.logs()
                );
                took
            }
            None => panic!(
                "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                self.label,
                self.logs()
            ),
        }
    }
}

impl Drop for HerdProcess {
    fn drop(&mut self) {
        let result = self.terminate();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        } else if !matches!(result, Some((status, _)) if status.success()) {
            eprintln!(
                "warning: {} did not stop cleanly on SIGTERM ({result:?})\n{}",
                self.label,
                self.logs()
            );
        }
    }
}

fn send_signal(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// The single child of `parent` (runuser forks and waits for the command it runs).
fn child_of(parent: u32) -> u32 {
    let path = format!("/proc/{parent}/task/{parent}/children");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(pid) = text.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "runuser (pid {parent}) started no child within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Finds `herd is ready k=v …` in `text` (already free of colour codes).
pub fn parse_ready_line(text: &str) -> Option<ReadyLine> {
    let line = text.lines().find(|l| l.contains("herd is ready"))?;
    let rest = &line[line.find("herd is ready")? + "herd is ready".len()..];
    let field = |key: &str| -> Option<String> {
        rest.split_whitespace()
            .filter_map(|token| token.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.trim_matches('"').to_string())
    };
    let api = field("api")?;
    Some(ReadyLine {
        api: api.trim_end_matches('/').to_string(),
        registry: field("registry").filter(|r| r != "off"),
        kubeconfig: field("kubeconfig").map(PathBuf::from),
    })
}

/// Removes ANSI escape sequences (`ESC [ … final-byte`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_with_colour_codes_and_quotes() {
        let line = "\u{1b}[2m2025\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m herd: herd is ready \u{1b}[3mapi\u{1b}[0m\u{1b}[2m=\u{1b}[0mhttps://127.0.0.1:4000 registry=off kubeconfig=\"/d/kubeconfig.yaml\"";
        let ready = parse_ready_line(&strip_ansi(line)).unwrap();
        assert_eq!(ready.api, "https://127.0.0.1:4000");
        assert_eq!(ready.registry, None);
        assert_eq!(ready.kubeconfig, Some(PathBuf::from("/d/kubeconfig.yaml")));
    }
}
