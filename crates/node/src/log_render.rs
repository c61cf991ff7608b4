//! What a log request gets out of a CRI log file, as the kubelet serves it: records older than
//! `since` skipped, each line prefixed with its time if asked, and the output cut at
//! `limitBytes` (timestamps count). Pure: bytes in, bytes out.

use jiff::Timestamp;

use crate::cri_log;

/// The options of a log request that shape the output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RenderOptions {
    /// Prefix each record with its RFC 3339 time (nine fractional digits) and a space.
    pub timestamps: bool,
    /// Skip records written before this time.
    pub since: Option<Timestamp>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
}

/// Renders records from a log file's bytes, which may arrive in any pieces.
#[derive(Debug)]
pub(crate) struct Renderer {
    options: RenderOptions,
    /// Bytes of output still allowed; `None` means no limit.
    remaining: Option<u64>,
    /// Records still to output when tailing without following; `None` means no count.
    records_left: Option<u64>,
    /// The start of a record whose newline has not been read yet.
    partial_record: Vec<u8>,
    done: bool,
}

impl Renderer {
    /// `record_count`: stop after this many records (a tail that does not follow).
    pub fn new(options: RenderOptions, record_count: Option<u64>) -> Self {
        Self {
            remaining: options.limit_bytes,
            options,
            records_left: record_count,
            partial_record: Vec::new(),
            done: record_count == Some(0),
        }
    }

    /// Nothing more will be output: the byte limit or the record count is reached.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Appends to `out` the output of the records that `bytes` complete.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut rest = bytes;
        while !self.done {
            let Some(newline) = rest.iter().position(|b| *b == b'\n') else {
                break;
            };
            let (line, after) = rest.split_at(newline + 1);
            rest = after;
            if self.partial_record.is_empty() {
                self.render(line, out);
            } else {
                let mut record = std::mem::take(&mut self.partial_record);
                record.extend_from_slice(line);
                self.render(&record, out);
            }
        }
        if !self.done {
            self.partial_record.extend_from_slice(rest);
        }
    }

    /// The file ends here: a last record without its newline is output too, as the kubelet
    /// does.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let record = std::mem::take(&mut self.partial_record);
        if !record.is_empty() && !self.done {
            self.render(&record, out);
        }
    }

    fn render(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let Some(record) = cri_log::parse_record(line) else {
            // Not a record (a write torn by a crash): skipped, like the kubelet does.
            tracing::debug!(line = %String::from_utf8_lossy(line), "skipping a malformed log line");
            return;
        };
        if let Some(left) = self.records_left.as_mut() {
            // Skipped by `since` or not, it is one of the tail's records.
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.done = true;
            }
        }
        if self.options.since.is_some_and(|since| record.time < since) {
            return;
        }
        let start = out.len();
        if self.options.timestamps {
            use std::io::Write;
            let _ = write!(out, "{:.9} ", record.time);
        }
        out.extend_from_slice(record.content);
        if !record.partial {
            out.push(b'\n');
        }
        if let Some(remaining) = self.remaining.as_mut() {
            let written = (out.len() - start) as u64;
            if written >= *remaining {
                out.truncate(start + usize::try_from(*remaining).unwrap_or(usize::MAX));
                *remaining = 0;
                self.done = true;
            } else {
                *remaining -= written;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri_log::{Stream, format_record};

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).expect("time")
    }

    /// A log of `(second, stream, partial, content)` records.
    fn log(records: &[(i64, Stream, bool, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (second, stream, partial, content) in records {
            format_record(&mut out, at(*second), *stream, *partial, content.as_bytes());
        }
        out
    }

    fn sample() -> Vec<u8> {
        log(&[
            (0, Stream::Stdout, false, "starting"),
            (1, Stream::Stderr, false, "warning: x"),
            (2, Stream::Stdout, true, "half "),
            (2, Stream::Stdout, false, "and half"),
            (3, Stream::Stdout, true, "no newline"),
        ])
    }

    /// Renders `bytes` fed in pieces of `piece` bytes.
    fn render(bytes: &[u8], options: RenderOptions, count: Option<u64>, piece: usize) -> String {
        let mut renderer = Renderer::new(options, count);
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece) {
            renderer.push(chunk, &mut out);
        }
        renderer.finish(&mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn strips_the_format_and_joins_partial_lines() {
        for piece in [1, 7, 4096] {
            assert_eq!(
                render(&sample(), RenderOptions::default(), None, piece),
                "starting\nwarning: x\nhalf and half\nno newline",
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn timestamps_prefix_every_record() {
        let options = RenderOptions {
            timestamps: true,
            ..RenderOptions::default()
        };
        assert_eq!(
            render(&sample(), options, None, 4096),
            "2023-11-14T22:13:20.000000000Z starting\n\
             2023-11-14T22:13:21.000000000Z warning: x\n\
             2023-11-14T22:13:22.000000000Z half 2023-11-14T22:13:22.000000000Z and half\n\
             2023-11-14T22:13:23.000000000Z no newline"
        );
    }

    #[test]
    fn since_skips_older_records() {
        let options = RenderOptions {
            since: Some(at(2)),
            ..RenderOptions::default()
        };
        assert_eq!(
            render(&sample(), options, None, 5),
            "half and half\nno newline"
        );
        let options = RenderOptions {
            since: Some(at(60)),
            ..RenderOptions::default()
        };
        assert_eq!(render(&sample(), options, None, 5), "");
    }

    #[test]
    fn limit_bytes_cuts_the_output_timestamps_included() {
        let limited = |limit: u64, timestamps: bool| {
            let options = RenderOptions {
                timestamps,
                limit_bytes: Some(limit),
                ..RenderOptions::default()
            };
            render(&sample(), options, None, 3)
        };
        assert_eq!(limited(3, false), "sta");
        assert_eq!(limited(9, false), "starting\n");
        assert_eq!(limited(12, false), "starting\nwar");
        assert_eq!(
            limited(1000, false),
            "starting\nwarning: x\nhalf and half\nno newline"
        );
        assert_eq!(limited(33, true), "2023-11-14T22:13:20.000000000Z st");
    }

    #[test]
    fn record_count_stops_a_tail() {
        assert_eq!(
            render(&sample(), RenderOptions::default(), Some(2), 4096),
            "starting\nwarning: x\n"
        );
        assert_eq!(
            render(&sample(), RenderOptions::default(), Some(0), 4096),
            ""
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let mut bytes = b"2023-11-14T22:13:20.0000Z stdo".to_vec();
        bytes.push(b'\n');
        bytes.extend(log(&[(5, Stream::Stdout, false, "after a torn write")]));
        bytes.extend_from_slice(b"plain text\n");
        assert_eq!(
            render(&bytes, RenderOptions::default(), None, 4096),
            "after a torn write\n"
        );
    }
}
