//! The CRI container log format, as containerd writes it and the kubelet reads it: one record
//! per line, `<RFC3339Nano time> <stdout|stderr> <P|F> <content>\n`. `F` ends a line of the
//! guest's output (its newline is the record's); `P` is a piece of a longer line, or the last
//! bytes of a stream that did not end with a newline.
//!
//! [`LineSplitter`] turns a stream of output bytes into records; [`parse_record`] reads one
//! back. Pure: no I/O, the clock is an argument.

use jiff::Timestamp;

/// The longest content of one record; longer lines are split into `P` pieces (containerd's
/// default `max_container_log_line_size`).
pub(crate) const MAX_RECORD_CONTENT: usize = 16 * 1024;

/// Which output of the guest a record comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One parsed record. `content` excludes the record's newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub time: Timestamp,
    pub stream: Stream,
    /// `P`: the guest's line continues in the next record of the stream (or never ended).
    pub partial: bool,
    pub content: &'a [u8],
}

/// Appends one record to `out`. `content` must not contain a newline.
pub(crate) fn format_record(
    out: &mut Vec<u8>,
    time: Timestamp,
    stream: Stream,
    partial: bool,
    content: &[u8],
) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{time:.9} {} ", stream.as_str());
    out.extend_from_slice(if partial { b"P " } else { b"F " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Parses one record, with or without its newline; `None` if it is not a CRI record. Any
/// RFC 3339 time is accepted (containerd trims trailing zeros, herd writes nine digits).
pub(crate) fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let (time, rest) = split_field(line)?;
    let (stream, rest) = split_field(rest)?;
    let (tags, content) = split_field(rest)?;
    let time = std::str::from_utf8(time).ok()?.parse::<Timestamp>().ok()?;
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    // Tags are `:`-separated; only the first (P or F) is defined.
    let partial = tags.split(|b| *b == b':').next() == Some(b"P");
    Some(Record {
        time,
        stream,
        partial,
        content,
    })
}

fn split_field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = bytes.iter().position(|b| *b == b' ')?;
    Some((&bytes[..space], &bytes[space + 1..]))
}

/// Cuts one stream of output into records, like containerd: a record per line (a `\r`
/// before the newline is dropped), lines longer than [`MAX_RECORD_CONTENT`] cut into `P`
/// pieces, and bytes after the last newline held until more come or the stream ends.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    stream: Stream,
    /// The start of a line whose newline has not come yet.
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    /// Appends to `out` the records that `bytes`, read at `time`, complete.
    pub fn push(&mut self, bytes: &[u8], time: Timestamp, out: &mut Vec<u8>) {
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|b| *b == b'\n') {
            let piece = &rest[..newline];
            rest = &rest[newline + 1..];
            if self.pending.is_empty() {
                self.emit_line(piece, time, out);
            } else {
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(piece);
                self.emit_line(&line, time, out);
                line.clear();
                // Keep the allocation for the next long line.
                self.pending = line;
            }
        }
        self.pending.extend_from_slice(rest);
        if self.pending.len() > MAX_RECORD_CONTENT {
            let cut = self.pending.len() - self.pending.len() % MAX_RECORD_CONTENT;
            // Whole pieces go now; a piece of exactly the maximum may still end with a newline.
            let cut = if cut == self.pending.len() {
                cut - MAX_RECORD_CONTENT
            } else {
                cut
            };
            for piece in self.pending[..cut].chunks(MAX_RECORD_CONTENT) {
                format_record(out, time, self.stream, true, piece);
            }
            self.pending.drain(..cut);
        }
    }

    /// The stream ended: appends what is left of an unfinished line as a `P` record.
    pub fn finish(&mut self, time: Timestamp, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            format_record(out, time, self.stream, true, &self.pending);
            self.pending.clear();
        }
    }

    fn emit_line(&self, line: &[u8], time: Timestamp, out: &mut Vec<u8>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut rest = line;
        while rest.len() > MAX_RECORD_CONTENT {
            let (piece, after) = rest.split_at(MAX_RECORD_CONTENT);
            format_record(out, time, self.stream, true, piece);
            rest = after;
        }
        format_record(out, time, self.stream, false, rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(nanos: i64) -> Timestamp {
        Timestamp::from_nanosecond(i128::from(1_700_000_000_000_000_000 + nanos)).expect("time")
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[test]
    fn formats_nine_digit_utc_times() {
        let mut out = Vec::new();
        format_record(&mut out, at(0), Stream::Stdout, false, b"hello");
        format_record(&mut out, at(5), Stream::Stderr, true, b"");
        assert_eq!(
            text(&out),
            "2023-11-14T22:13:20.000000000Z stdout F hello\n\
             2023-11-14T22:13:20.000000005Z stderr P \n"
        );
    }

    #[test]
    fn parses_what_it_formats_and_what_containerd_writes() {
        let mut out = Vec::new();
        format_record(&mut out, at(120), Stream::Stderr, false, b"a b  c");
        let record = parse_record(&out).expect("record");
        assert_eq!(
            record,
            Record {
                time: at(120),
                stream: Stream::Stderr,
                partial: false,
                content: b"a b  c",
            }
        );

        let containerd = b"2016-10-06T00:17:09.669794202Z stdout P log content 1\n";
        let record = parse_record(containerd).expect("containerd record");
        assert!(record.partial);
        assert_eq!(record.content, b"log content 1");
        let trimmed = b"2016-10-06T00:17:09.6697942+02:00 stdout F:x \n";
        let record = parse_record(trimmed).expect("trimmed time, extra tag, empty content");
        assert_eq!(
            record.time,
            "2016-10-05T22:17:09.6697942Z".parse().expect("time")
        );
        assert!(!record.partial);
        assert_eq!(record.content, b"");
    }

    #[test]
    fn rejects_what_is_not_a_record() {
        for line in [
            &b""[..],
            b"hello world\n",
            b"2016-10-06T00:17:09Z stdin F x\n",
            b"2016-10-06T00:17:09Z stdout\n",
            b"2016-10-06T00:17:09Z stdout F",
            b"yesterday stdout F x\n",
        ] {
            assert_eq!(parse_record(line), None, "{:?}", text(line));
        }
    }

    fn split(chunks: &[&[u8]]) -> Vec<(bool, String)> {
        let mut splitter = LineSplitter::new(Stream::Stdout);
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, at(0), &mut out);
        }
        splitter.finish(at(1), &mut out);
        out.split_inclusive(|b| *b == b'\n')
            .map(|line| {
                let record = parse_record(line).expect("record");
                (record.partial, text(record.content))
            })
            .collect()
    }

    #[test]
    fn splits_lines_across_reads() {
        assert_eq!(
            split(&[b"one\ntw", b"o\r\n", b"\nthree"]),
            vec![
                (false, "one".into()),
                (false, "two".into()),
                (false, String::new()),
                (true, "three".into()),
            ]
        );
        assert_eq!(split(&[]), vec![]);
        assert_eq!(split(&[b"a\r"]), vec![(true, "a\r".into())]);
    }

    #[test]
    fn cuts_long_lines_into_pieces() {
        let max = MAX_RECORD_CONTENT;
        let long = vec![b'x'; 2 * max + 3];
        let pieces = split(&[&long, b"\n"]);
        let shape: Vec<(bool, usize)> = pieces.iter().map(|(p, s)| (*p, s.len())).collect();
        assert_eq!(shape, vec![(true, max), (true, max), (false, 3)]);

        // Exactly the maximum, newline in a later read: one full record.
        let exact = vec![b'y'; max];
        let shape: Vec<(bool, usize)> = split(&[&exact, b"\n"])
            .iter()
            .map(|(p, s)| (*p, s.len()))
            .collect();
        assert_eq!(shape, vec![(false, max)]);

        // A long line that never ends: pieces, then the rest at the end of the stream.
        let shape: Vec<(bool, usize)> =
            split(&[&long]).iter().map(|(p, s)| (*p, s.len())).collect();
        assert_eq!(shape, vec![(true, max), (true, max), (true, 3)]);

        let joined: String = split(&[&long, b"\n"]).into_iter().map(|(_, s)| s).collect();
        assert_eq!(joined.len(), long.len(), "nothing lost or added");
    }
}
