//! Captures a guest's stdout and stderr into its run's log file as CRI records, timestamped
//! when read. The guest writes into OS pipes; one thread per pipe reads it, cuts the bytes
//! into records and appends them to the file, whole records per write, so the two streams
//! never tear each other's lines.
//!
//! The readers are plain threads, not tasks: the guest's writes block on a full pipe inside
//! the async runtime, and a reader that needed a runtime worker could then never run.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::oneshot;

use crate::cri_log::{LineSplitter, Stream};

const READ_CHUNK: usize = 64 * 1024;

/// The guest's ends of the pipes, to put into its `RunSpec`.
pub(crate) struct GuestOutput {
    pub stdout: File,
    pub stderr: File,
}

/// The reader threads of one run.
pub(crate) struct LogCapture {
    done: Vec<oneshot::Receiver<()>>,
}

/// Starts capturing into `log` (opened for appending).
///
/// # Errors
///
/// Creating a pipe or a thread failed.
pub(crate) fn capture(log: File) -> io::Result<(GuestOutput, LogCapture)> {
    let log = Arc::new(Mutex::new(log));
    let mut done = Vec::with_capacity(2);
    let mut writers = Vec::with_capacity(2);
    for stream in [Stream::Stdout, Stream::Stderr] {
        let (reader, writer) = io::pipe()?;
        let (finished, finished_rx) = oneshot::channel();
        let log = log.clone();
        std::thread::Builder::new()
            .name(format!("log-{}", stream.as_str()))
            .spawn(move || {
                copy_records(reader, stream, &log);
                let _ = finished.send(());
            })?;
        done.push(finished_rx);
        writers.push(File::from(OwnedFd::from(writer)));
    }
    let stderr = writers
        .pop()
        .ok_or_else(|| io::Error::other("no stderr pipe"))?;
    let stdout = writers
        .pop()
        .ok_or_else(|| io::Error::other("no stdout pipe"))?;
    Ok((GuestOutput { stdout, stderr }, LogCapture { done }))
}

impl LogCapture {
    /// Waits until every byte the guest wrote is in the log file: both pipes have reached
    /// their end, which they do once every copy of the guest's ends is closed. `false` if that
    /// took longer than `timeout` (the readers then finish on their own).
    pub async fn drained(self, timeout: Duration) -> bool {
        let all = futures::future::join_all(self.done);
        tokio::time::timeout(timeout, all).await.is_ok()
    }
}

/// Reads `pipe` to its end, appending the records of `stream` to `log`.
fn copy_records(mut pipe: impl Read, stream: Stream, log: &Mutex<File>) {
    let mut splitter = LineSplitter::new(stream);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut records = Vec::with_capacity(READ_CHUNK + 256);
    let mut write_failed = false;
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                tracing::warn!(stream = stream.as_str(), %error, "reading the guest's output failed");
                0
            }
        };
        let now = Timestamp::now();
        if n == 0 {
            splitter.finish(now, &mut records);
        } else {
            splitter.push(&buf[..n], now, &mut records);
        }
        if !records.is_empty() {
            let mut file = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // Keep reading after a failed write, so the guest is never blocked on its output.
            if let Err(error) = file.write_all(&records)
                && !write_failed
            {
                write_failed = true;
                tracing::warn!(stream = stream.as_str(), %error, "writing the container log failed");
            }
            records.clear();
        }
        if n == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri_log::parse_record;

    #[tokio::test]
    async fn both_streams_become_records_and_nothing_is_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open");
        let (mut output, capture) = capture(log).expect("capture");
        let long = "y".repeat(100_000);
        let writer = std::thread::spawn(move || {
            output.stdout.write_all(b"hello\nwor").expect("write");
            output.stderr.write_all(b"oops\n").expect("write");
            output.stdout.write_all(b"ld\n").expect("write");
            // More than a pipe holds: the reader must keep up.
            output.stdout.write_all(long.as_bytes()).expect("write");
            output.stdout.write_all(b"\nbye").expect("write");
        });
        writer.join().expect("writer");
        assert!(capture.drained(Duration::from_secs(5)).await, "drained");

        let text = std::fs::read(&path).expect("read");
        let records: Vec<_> = text
            .split_inclusive(|b| *b == b'\n')
            .map(|line| parse_record(line).expect("every line is a record"))
            .collect();
        let stdout: Vec<u8> = records
            .iter()
            .filter(|r| r.stream == Stream::Stdout)
            .flat_map(|r| {
                let mut bytes = r.content.to_vec();
                if !r.partial {
                    bytes.push(b'\n');
                }
                bytes
            })
            .collect();
        let expected = format!("hello\nworld\n{}\nbye", "y".repeat(100_000));
        assert_eq!(String::from_utf8(stdout).expect("utf-8"), expected);
        let stderr: Vec<&[u8]> = records
            .iter()
            .filter(|r| r.stream == Stream::Stderr)
            .map(|r| r.content)
            .collect();
        assert_eq!(stderr, vec![&b"oops"[..]]);
        let last = records.iter().rfind(|r| r.stream == Stream::Stdout);
        assert!(last.is_some_and(|r| r.partial && r.content == b"bye"));
    }

    #[tokio::test]
    async fn an_open_guest_end_keeps_the_capture_going() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = File::create(dir.path().join("0.log")).expect("open");
        let (output, capture) = capture(log).expect("capture");
        let kept = output.stdout.try_clone().expect("clone");
        drop(output);
        assert!(!capture.drained(Duration::from_millis(200)).await);
        drop(kept);
    }
}
