//! Captures a guest's stdout and stderr into its run's log file as CRI records, timestamped
//! when written. The runtime hands each chunk the guest writes to an [`OutputSink`]; one sink
//! per stream cuts the bytes into records and appends them to the file, whole records per
//! write, so the two streams never tear each other's lines. No pipes and no threads, and the
//! file is only held open once the guest has written something: an idle pod costs nothing here
//! (not even a file descriptor), so a node can hold thousands.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use herd_wasm_runtime::{Output, OutputSink};
use jiff::Timestamp;

use crate::cri_log::{LineSplitter, Stream};

/// The guest's output streams, to put into its `RunSpec`.
pub(crate) struct GuestOutput {
    pub stdout: Output,
    pub stderr: Output,
}

/// The two sinks of one run, to finish when the run is over.
pub(crate) struct LogCapture {
    sinks: [Arc<CriSink>; 2],
}

/// The run's log file, opened (appending) at the first write.
struct LazyLog {
    path: PathBuf,
    file: Option<File>,
}

impl LazyLog {
    fn append(&mut self, records: &[u8]) -> io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self
                .file
                .insert(File::options().append(true).open(&self.path)?),
        };
        file.write_all(records)
    }
}

/// One stream's records into the shared log file.
struct CriSink {
    log: Arc<Mutex<LazyLog>>,
    state: Mutex<SinkState>,
}

struct SinkState {
    splitter: LineSplitter,
    records: Vec<u8>,
    write_failed: bool,
    stream: Stream,
}

/// Starts capturing into the log file at `path`, which `opened` (the caller's handle, with any torn
/// record already closed) refers to; it is closed until the guest writes.
pub(crate) fn capture(opened: File, path: &Path) -> (GuestOutput, LogCapture) {
    drop(opened);
    let log = Arc::new(Mutex::new(LazyLog {
        path: path.to_path_buf(),
        file: None,
    }));
    let sink = |stream| {
        Arc::new(CriSink {
            log: log.clone(),
            state: Mutex::new(SinkState {
                splitter: LineSplitter::new(stream),
                records: Vec::new(),
                write_failed: false,
                stream,
            }),
        })
    };
    let (stdout, stderr) = (sink(Stream::Stdout), sink(Stream::Stderr));
    let output = GuestOutput {
        stdout: Output::Sink(stdout.clone()),
        stderr: Output::Sink(stderr.clone()),
    };
    (
        output,
        LogCapture {
            sinks: [stdout, stderr],
        },
    )
}

impl LogCapture {
    /// The run is over: writes out what is left of an unterminated last line of each stream.
    pub fn finish(self) {
        for sink in &self.sinks {
            sink.append(|state, now| {
                let SinkState {
                    splitter, records, ..
                } = state;
                splitter.finish(now, records);
            });
        }
    }
}

impl CriSink {
    /// Lets `make` add records, then appends them to the file.
    fn append(&self, make: impl FnOnce(&mut SinkState, Timestamp)) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        make(&mut state, Timestamp::now());
        if state.records.is_empty() {
            return;
        }
        let mut file = self.log.lock().unwrap_or_else(|p| p.into_inner());
        // A failed write is reported once; the guest is never held up by its log.
        if let Err(error) = file.append(&state.records)
            && !state.write_failed
        {
            state.write_failed = true;
            tracing::warn!(stream = state.stream.as_str(), %error, "writing the container log failed");
        }
        state.records.clear();
    }
}

impl OutputSink for CriSink {
    fn write(&self, bytes: &[u8]) {
        self.append(|state, now| {
            let SinkState {
                splitter, records, ..
            } = state;
            splitter.push(bytes, now, records);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri_log::parse_record;

    fn sink(output: &Output) -> &Arc<dyn OutputSink> {
        match output {
            Output::Sink(sink) => sink,
            Output::File(_) => panic!("a sink"),
        }
    }

    #[test]
    fn both_streams_become_records_and_nothing_is_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open");
        let (output, capture) = capture(log, &path);
        let (out, err) = (sink(&output.stdout).clone(), sink(&output.stderr).clone());
        let long = "y".repeat(100_000);
        let writer = std::thread::spawn(move || {
            out.write(b"hello\nwor");
            err.write(b"oops\n");
            out.write(b"ld\n");
            out.write(long.as_bytes());
            out.write(b"\nbye");
        });
        writer.join().expect("writer");
        capture.finish();

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
}
