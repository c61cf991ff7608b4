//! Container log files: where they live, which are still being written, and reading them
//! (whole, tailed, or followed, rendered by [`Renderer`]).
//!
//! Layout: `<data_dir>/pods/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`, one file per
//! run, stdout and stderr interleaved as CRI records (see `cri_log`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use k8s_openapi::api::core::v1::Pod;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::log_render::{RenderOptions, Renderer};

/// How often a follower looks for new bytes.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
const READ_CHUNK: usize = 64 * 1024;

/// Why logs could not be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogError {
    #[error("pod {namespace}/{pod} is not known on this node")]
    PodNotFound { namespace: String, pod: String },
    #[error("container {container:?} in pod {pod:?} is waiting to start")]
    NotStarted { pod: String, container: String },
    #[error("previous terminated container {container:?} in pod {pod:?} not found")]
    NoPrevious { pod: String, container: String },
    #[error("reading logs: {0}")]
    Io(#[from] io::Error),
}

/// The log directory of a node, and which pods and runs are live. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct ContainerLogs {
    root: Arc<PathBuf>,
    live: Arc<Mutex<Live>>,
}

#[derive(Debug, Default)]
struct Live {
    /// `(namespace, pod)` → UID of the pod this node is running under that name.
    pods: HashMap<(String, String), String>,
    /// Log files a running container is writing.
    writing: HashSet<PathBuf>,
}

/// Identifies one pod's logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodLogKey {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
}

impl PodLogKey {
    pub fn of(pod: &Pod) -> Self {
        Self {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            pod: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }

    fn dir_name(&self) -> String {
        format!("{}_{}_{}", self.namespace, self.pod, self.uid)
    }
}

/// Marks a pod as live until dropped.
pub(crate) struct LivePod {
    logs: ContainerLogs,
    key: PodLogKey,
}

impl Drop for LivePod {
    fn drop(&mut self) {
        let mut live = self.logs.live();
        let name = (self.key.namespace.clone(), self.key.pod.clone());
        if live.pods.get(&name) == Some(&self.key.uid) {
            live.pods.remove(&name);
        }
    }
}

/// Marks a log file as being written until dropped.
pub(crate) struct WritingLog {
    logs: ContainerLogs,
    path: PathBuf,
}

impl WritingLog {
    /// The log file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WritingLog {
    fn drop(&mut self) {
        self.logs.live().writing.remove(&self.path);
    }
}

impl ContainerLogs {
    /// Logs under `<data_dir>/pods`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: Arc::new(data_dir.join("pods")),
            live: Arc::default(),
        }
    }

    fn live(&self) -> MutexGuard<'_, Live> {
        // A poisoned lock only means a panic elsewhere; the sets are still consistent.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn pod_dir(&self, key: &PodLogKey) -> PathBuf {
        self.root.join(key.dir_name())
    }

    pub fn log_path(&self, key: &PodLogKey, container: &str, restart_count: i32) -> PathBuf {
        self.pod_dir(key)
            .join(container)
            .join(format!("{restart_count}.log"))
    }

    /// Registers `key` as the pod running under its name here, until the guard is dropped.
    pub fn register_pod(&self, key: PodLogKey) -> LivePod {
        self.live()
            .pods
            .insert((key.namespace.clone(), key.pod.clone()), key.uid.clone());
        LivePod {
            logs: self.clone(),
            key,
        }
    }

    /// Opens (appending) the log file of one run and marks it as being written. A record torn
    /// by a crash of an earlier agent is ended first, so it cannot swallow the next one.
    pub fn open_run(
        &self,
        key: &PodLogKey,
        container: &str,
        restart_count: i32,
    ) -> io::Result<(File, WritingLog)> {
        let path = self.log_path(key, container, restart_count);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = File::options()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        if ends_torn(&mut file)? {
            file.write_all(b"\n")?;
        }
        self.live().writing.insert(path.clone());
        Ok((
            file,
            WritingLog {
                logs: self.clone(),
                path,
            },
        ))
    }

    /// Deletes a pod's logs (after the pod is gone).
    pub async fn remove_pod(&self, key: &PodLogKey) -> io::Result<()> {
        match tokio::fs::remove_dir_all(self.pod_dir(key)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn is_writing(&self, path: &Path) -> bool {
        self.live().writing.contains(path)
    }

    fn live_uid(&self, namespace: &str, pod: &str) -> Option<String> {
        self.live()
            .pods
            .get(&(namespace.to_owned(), pod.to_owned()))
            .cloned()
    }

    /// The directory holding `namespace/pod`'s logs: the live pod's, else the newest one.
    async fn find_pod_dir(&self, namespace: &str, pod: &str) -> Result<(PathBuf, bool), LogError> {
        if let Some(uid) = self.live_uid(namespace, pod) {
            let key = PodLogKey {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                uid,
            };
            return Ok((self.pod_dir(&key), true));
        }
        let prefix = format!("{namespace}_{pod}_");
        let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
        let mut entries = match tokio::fs::read_dir(self.root.as_path()).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LogError::PodNotFound {
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = entries.next_entry().await? {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let modified = entry.metadata().await?.modified()?;
            if newest.as_ref().is_none_or(|(time, _)| modified > *time) {
                newest = Some((modified, entry.path()));
            }
        }
        newest
            .map(|(_, dir)| (dir, false))
            .ok_or_else(|| LogError::PodNotFound {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
            })
    }

    /// Streams a container's log: the newest run's (or with `previous`, the one before),
    /// starting `tail_lines` records from the end if given, rendered as `request.render` says.
    /// With `follow`, keeps streaming what is appended until the run ends, the byte limit is
    /// reached or `stop` is cancelled; a container that has not started yet is waited for while
    /// its pod is live.
    pub async fn stream(
        &self,
        request: LogRequest,
        stop: CancellationToken,
    ) -> Result<impl Stream<Item = io::Result<Bytes>> + Send + use<>, LogError> {
        let (pod_dir, live) = self.find_pod_dir(&request.namespace, &request.pod).await?;
        let container_dir = pod_dir.join(&request.container);
        let path = loop {
            let runs = run_logs(&container_dir).await?;
            let chosen = if request.previous {
                runs.iter().rev().nth(1)
            } else {
                runs.last()
            };
            match chosen {
                Some((_, path)) => break path.clone(),
                None if request.previous => {
                    return Err(LogError::NoPrevious {
                        pod: request.pod,
                        container: request.container,
                    });
                }
                None if request.follow
                    && live
                    && self.live_uid(&request.namespace, &request.pod).is_some() =>
                {
                    tokio::select! {
                        () = stop.cancelled() => {
                            return Err(LogError::NotStarted { pod: request.pod, container: request.container });
                        }
                        () = tokio::time::sleep(FOLLOW_POLL) => {}
                    }
                }
                None => {
                    return Err(LogError::NotStarted {
                        pod: request.pod,
                        container: request.container,
                    });
                }
            }
        };
        let mut file = tokio::fs::File::open(&path).await?;
        if let Some(lines) = request.tail_lines {
            let tailed = path.clone();
            let offset =
                tokio::task::spawn_blocking(move || tail_offset(File::open(tailed)?, lines))
                    .await
                    .map_err(io::Error::other)??;
            tokio::io::AsyncSeekExt::seek(&mut file, SeekFrom::Start(offset)).await?;
        }
        // Without follow, a tail is exactly the records found now; lines appended meanwhile
        // are not served.
        let record_count = request.tail_lines.filter(|_| !request.follow);
        let follower = Follower {
            logs: self.clone(),
            path,
            file,
            follow: request.follow,
            stop,
            renderer: Renderer::new(request.render, record_count),
            done: false,
        };
        Ok(futures::stream::unfold(follower, Follower::next))
    }
}

/// What a log request asks for.
#[derive(Clone, Debug)]
pub(crate) struct LogRequest {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<u64>,
    pub render: RenderOptions,
}

struct Follower {
    logs: ContainerLogs,
    path: PathBuf,
    file: tokio::fs::File,
    follow: bool,
    stop: CancellationToken,
    renderer: Renderer,
    done: bool,
}

impl Follower {
    async fn next(mut self) -> Option<(io::Result<Bytes>, Self)> {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut out = Vec::new();
        while !self.done {
            // Checked before reading, so the bytes of a run that just ended are still sent.
            let writing = self.follow && self.logs.is_writing(&self.path);
            match self.file.read(&mut buf).await {
                Ok(0) if writing => {
                    tokio::select! {
                        () = self.stop.cancelled() => return None,
                        () = tokio::time::sleep(FOLLOW_POLL) => {}
                    }
                }
                Ok(0) => {
                    self.renderer.finish(&mut out);
                    self.done = true;
                }
                Ok(n) => {
                    self.renderer.push(&buf[..n], &mut out);
                    self.done = self.renderer.is_done();
                }
                Err(e) => {
                    self.done = true;
                    return Some((Err(e), self));
                }
            }
            if !out.is_empty() {
                return Some((Ok(Bytes::from(out)), self));
            }
        }
        None
    }
}

/// Whether `file` is non-empty and does not end with a newline.
fn ends_torn(file: &mut File) -> io::Result<bool> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// The run logs in a container's directory, ordered by restart count.
async fn run_logs(container_dir: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let mut runs = Vec::new();
    let mut entries = match tokio::fs::read_dir(container_dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(runs),
        Err(e) => return Err(e),
    };
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        let restart = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(restart) = restart {
            runs.push((restart, entry.path()));
        }
    }
    runs.sort();
    Ok(runs)
}

/// The offset where the last `lines` lines of `reader` start. A final line without a
/// newline counts as a line; the newline ending the last line does not start another.
pub(crate) fn tail_offset<R: Read + Seek>(mut reader: R, lines: u64) -> io::Result<u64> {
    let len = reader.seek(SeekFrom::End(0))?;
    if lines == 0 {
        return Ok(len);
    }
    let mut end = len;
    let mut newlines_seen = 0u64;
    let mut buf = vec![0u8; 8192];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..usize::try_from(end - start).map_err(io::Error::other)?];
        reader.seek(SeekFrom::Start(start))?;
        reader.read_exact(chunk)?;
        for (i, byte) in chunk.iter().enumerate().rev() {
            // The newline ending the last line does not start another line.
            if *byte != b'\n' || start + i as u64 == len - 1 {
                continue;
            }
            newlines_seen += 1;
            if newlines_seen == lines {
                return Ok(start + i as u64 + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri_log::{LineSplitter, Stream};
    use futures::StreamExt;
    use std::io::Cursor;

    fn tail(text: &str, lines: u64) -> String {
        let offset = tail_offset(Cursor::new(text.as_bytes()), lines).expect("tail");
        text[usize::try_from(offset).expect("offset")..].to_owned()
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a\nb\nc\n", 10), "a\nb\nc\n");
        assert_eq!(tail("a\nb\nc\n", 0), "");
        assert_eq!(tail("", 3), "");
        assert_eq!(tail("\n\n", 1), "\n");
        let long: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail(&long, 2), "line 4998\nline 4999\n");
    }

    fn key() -> PodLogKey {
        PodLogKey {
            namespace: "shop".into(),
            pod: "web".into(),
            uid: "u1".into(),
        }
    }

    fn at(second: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + second).expect("time")
    }

    /// `text` as the CRI records of stdout output read at `second`.
    fn records(text: &str, second: i64) -> Vec<u8> {
        let mut splitter = LineSplitter::new(Stream::Stdout);
        let mut out = Vec::new();
        splitter.push(text.as_bytes(), at(second), &mut out);
        splitter.finish(at(second), &mut out);
        out
    }

    fn request(follow: bool, previous: bool, tail_lines: Option<u64>) -> LogRequest {
        LogRequest {
            namespace: "shop".into(),
            pod: "web".into(),
            container: "app".into(),
            follow,
            previous,
            tail_lines,
            render: RenderOptions::default(),
        }
    }

    async fn collect(logs: &ContainerLogs, request: LogRequest) -> Result<String, LogError> {
        let stream = logs.stream(request, CancellationToken::new()).await?;
        let chunks: Vec<io::Result<Bytes>> = stream.collect().await;
        let bytes: Vec<u8> = chunks
            .into_iter()
            .map(|c| c.expect("chunk"))
            .flat_map(|b| b.to_vec())
            .collect();
        Ok(String::from_utf8(bytes).expect("utf-8"))
    }

    #[test]
    fn layout() {
        let logs = ContainerLogs::new(Path::new("/data"));
        assert_eq!(
            logs.log_path(&key(), "app", 3),
            Path::new("/data/pods/shop_web_u1/app/3.log")
        );
    }

    async fn logs_with_runs(dir: &Path) -> ContainerLogs {
        let logs = ContainerLogs::new(dir);
        for (run, text) in [(0, "first\n"), (1, "second\n"), (2, "third\nfourth\n")] {
            let (mut file, _writing) = logs.open_run(&key(), "app", run).expect("open");
            file.write_all(&records(text, run.into())).expect("write");
        }
        let (mut file, _writing) = logs.open_run(&key(), "app", 2).expect("open");
        file.write_all(&records("fifth", 10)).expect("write");
        logs
    }

    #[tokio::test]
    async fn newest_previous_and_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = logs_with_runs(dir.path()).await;
        let get = |request| {
            let logs = logs.clone();
            async move { collect(&logs, request).await.expect("logs") }
        };
        assert_eq!(
            get(request(false, false, None)).await,
            "third\nfourth\nfifth"
        );
        assert_eq!(get(request(false, true, None)).await, "second\n");
        assert_eq!(get(request(false, false, Some(2))).await, "fourth\nfifth");
        assert_eq!(get(request(false, false, Some(0))).await, "");
        let other = LogRequest {
            pod: "nope".into(),
            ..request(false, false, None)
        };
        assert!(matches!(
            collect(&logs, other).await,
            Err(LogError::PodNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn tail_with_timestamps_since_and_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = logs_with_runs(dir.path()).await;
        let with = |tail_lines, render| LogRequest {
            render,
            ..request(false, false, tail_lines)
        };
        let timestamps = RenderOptions {
            timestamps: true,
            ..RenderOptions::default()
        };
        assert_eq!(
            collect(&logs, with(Some(2), timestamps.clone()))
                .await
                .expect("logs"),
            "2023-11-14T22:13:22.000000000Z fourth\n2023-11-14T22:13:30.000000000Z fifth"
        );
        let since = RenderOptions {
            since: Some(at(5)),
            ..RenderOptions::default()
        };
        assert_eq!(
            collect(&logs, with(None, since)).await.expect("logs"),
            "fifth"
        );
        let limited = RenderOptions {
            limit_bytes: Some(8),
            ..timestamps
        };
        assert_eq!(
            collect(&logs, with(Some(1), limited)).await.expect("logs"),
            "2023-11-"
        );
    }

    #[tokio::test]
    async fn a_torn_record_is_ended_before_appending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = ContainerLogs::new(dir.path());
        let (mut file, writing) = logs.open_run(&key(), "app", 0).expect("open");
        file.write_all(&records("whole\n", 0)).expect("write");
        file.write_all(b"2023-11-14T22:13:20.0Z stdout F tor")
            .expect("write");
        drop((file, writing));
        let (mut file, _writing) = logs.open_run(&key(), "app", 0).expect("open again");
        file.write_all(&records("after\n", 1)).expect("write");
        assert_eq!(
            collect(&logs, request(false, false, None))
                .await
                .expect("logs"),
            "whole\ntor\nafter\n"
        );
    }

    #[tokio::test]
    async fn follow_streams_appended_records_until_the_run_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = ContainerLogs::new(dir.path());
        let _pod = logs.register_pod(key());
        let follower = tokio::spawn({
            let logs = logs.clone();
            async move { collect(&logs, request(true, false, None)).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (mut file, writing) = logs.open_run(&key(), "app", 0).expect("open");
        file.write_all(&records("hello\n", 0)).expect("write");
        // A record seen half-written is served once it is complete.
        let world = records("world\n", 1);
        let (first, second) = world.split_at(12);
        file.write_all(first).expect("write");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !follower.is_finished(),
            "still following while the run is live"
        );
        file.write_all(second).expect("write");
        file.write_all(&records("bye", 2)).expect("write");
        drop(writing);
        let text = tokio::time::timeout(Duration::from_secs(5), follower)
            .await
            .expect("follow ends after the run")
            .expect("join")
            .expect("logs");
        assert_eq!(text, "hello\nworld\nbye");
    }

    #[tokio::test]
    async fn follow_ends_at_the_byte_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = ContainerLogs::new(dir.path());
        let _pod = logs.register_pod(key());
        let (mut file, _writing) = logs.open_run(&key(), "app", 0).expect("open");
        file.write_all(&records("hello\nworld\n", 0))
            .expect("write");
        let limited = LogRequest {
            render: RenderOptions {
                limit_bytes: Some(7),
                ..RenderOptions::default()
            },
            ..request(true, false, None)
        };
        let text = tokio::time::timeout(Duration::from_secs(5), collect(&logs, limited))
            .await
            .expect("the limit ends a follow")
            .expect("logs");
        assert_eq!(text, "hello\nw");
    }

    #[tokio::test]
    async fn not_started_without_follow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = ContainerLogs::new(dir.path());
        let _pod = logs.register_pod(key());
        assert!(matches!(
            collect(&logs, request(false, false, None)).await,
            Err(LogError::NotStarted { .. })
        ));
        assert!(matches!(
            collect(&logs, request(false, true, None)).await,
            Err(LogError::NoPrevious { .. })
        ));
    }
}
