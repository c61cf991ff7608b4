//! `loadgen` — an ordinary `std::net` program for wasm32-wasip2 (a command component) that knows nothing of
//! herd: a client in a pod loading a server, and a server that shows whom it sees.
//!
//! - `loadgen http ADDR SECONDS CONNECTIONS [PATH]` opens `CONNECTIONS` HTTP/1.1 keep-alive connections to
//!   `ADDR` (e.g. `127.10.0.1:80`; names are resolved) and for `SECONDS` sends `GET PATH` (default `/`) on
//!   each, then reads each answer (Content-Length or chunked), round after round (WASI has no threads: the
//!   connections' requests are in flight together). It prints `requests=N errors=E seconds=S` and exits 0;
//!   a connection that fails is opened again (counted as an error).
//! - `loadgen whoami-serve ADDR` binds a `TcpListener` on `ADDR`, prints `listening on <local address>`
//!   and answers every connection with one line, `pod=<POD_NAME or "?"> peer=<the client's address>`,
//!   then closes it; for ever.
//! - `loadgen whoami ADDR COUNT` connects to `ADDR` `COUNT` times, one connection after another, and prints
//!   `local=<its own address> answer=<the server's line>` for each (or `connect ADDR: <error>`), then exits.
//!   A server's `peer=` equal to the client's `local=` shows that nothing stood between them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// What the arguments ask for.
#[derive(Debug, PartialEq, Eq)]
enum Mode<'a> {
    Http {
        addr: &'a str,
        seconds: u64,
        connections: usize,
        path: &'a str,
    },
    WhoamiServe(&'a str),
    Whoami {
        addr: &'a str,
        count: usize,
    },
}

fn parse(args: &[String]) -> Option<Mode<'_>> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["http", addr, seconds, connections, rest @ ..] if rest.len() <= 1 => Some(Mode::Http {
            addr,
            seconds: seconds.parse().ok()?,
            connections: connections.parse().ok().filter(|n| *n > 0)?,
            path: rest.first().copied().unwrap_or("/"),
        }),
        ["whoami-serve", addr] => Some(Mode::WhoamiServe(addr)),
        ["whoami", addr, count] => Some(Mode::Whoami {
            addr,
            count: count.parse().ok()?,
        }),
        _ => None,
    }
}

/// One keep-alive connection: its stream, owned by its read buffer (writes go through `&TcpStream`; WASI
/// has no `dup`, so `try_clone` is not supported).
struct Connection(BufReader<TcpStream>);

impl Connection {
    fn open(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self(BufReader::with_capacity(16 * 1024, stream)))
    }

    fn send(&mut self, request: &[u8]) -> std::io::Result<()> {
        let mut stream: &TcpStream = self.0.get_ref();
        stream.write_all(request)
    }

    /// Reads one response; its status code.
    fn receive(&mut self) -> std::io::Result<u16> {
        read_response(&mut self.0)
    }
}

fn invalid(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// Reads one HTTP/1.1 response (a body of Content-Length bytes, chunked, or none) from `reader`; its status.
fn read_response(reader: &mut impl BufRead) -> std::io::Result<u16> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(format!("not a status line: {line:?}")))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(invalid(format!("not a header: {header:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| invalid("bad content-length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or_default();
            let size = u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        return Ok(status);
                    }
                }
            }
            skip(reader, size + 2)?;
        }
    }
    skip(reader, length.unwrap_or(0))?;
    Ok(status)
}

/// Reads and drops `n` bytes.
fn skip(reader: &mut impl Read, n: u64) -> std::io::Result<()> {
    let copied = std::io::copy(&mut reader.take(n), &mut std::io::sink())?;
    if copied == n {
        Ok(())
    } else {
        Err(std::io::ErrorKind::UnexpectedEof.into())
    }
}

/// The load: rounds of one request on every connection, then every answer.
fn http(addr: &str, duration: Duration, connections: usize, path: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: loadgen\r\n\r\n");
    let mut open: Vec<Option<Connection>> = (0..connections).map(|_| None).collect();
    let (mut requests, mut errors) = (0u64, 0u64);
    let started = Instant::now();
    while started.elapsed() < duration {
        for slot in &mut open {
            if slot.is_none() {
                match Connection::open(addr) {
                    Ok(connection) => *slot = Some(connection),
                    Err(e) => {
                        errors += 1;
                        eprintln!("connect {addr}: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
            }
            if let Some(connection) = slot
                && connection.send(request.as_bytes()).is_err()
            {
                errors += 1;
                *slot = None;
            }
        }
        for slot in &mut open {
            let Some(connection) = slot else { continue };
            match connection.receive() {
                Ok(200) => requests += 1,
                Ok(_) => errors += 1,
                Err(e) => {
                    eprintln!("receive from {addr}: {e}");
                    errors += 1;
                    *slot = None;
                }
            }
        }
    }
    println!(
        "requests={requests} errors={errors} seconds={:.3}",
        started.elapsed().as_secs_f64()
    );
}

fn whoami_serve(addr: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).inspect_err(|e| println!("bind {addr}: {e}"))?;
    println!("listening on {}", listener.local_addr()?);
    let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "?".into());
    for stream in listener.incoming() {
        let answered = stream.and_then(|stream| {
            let peer = stream.peer_addr()?;
            writeln!(&stream, "pod={pod} peer={peer}")
        });
        if let Err(e) = answered {
            println!("client: {e}");
        }
    }
    Ok(())
}

fn whoami(addr: &str, count: usize) {
    for _ in 0..count {
        let answer = TcpStream::connect(addr).and_then(|stream| {
            let local = stream.local_addr()?;
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line)?;
            Ok((local, line))
        });
        match answer {
            Ok((local, line)) => println!("local={local} answer={}", line.trim_end()),
            Err(e) => println!("connect {addr}: {e}"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Some(Mode::Http {
            addr,
            seconds,
            connections,
            path,
        }) => http(addr, Duration::from_secs(seconds), connections, path),
        Some(Mode::WhoamiServe(addr)) => {
            if whoami_serve(addr).is_err() {
                std::process::exit(1);
            }
        }
        Some(Mode::Whoami { addr, count }) => whoami(addr, count),
        None => {
            eprintln!(
                "usage: loadgen http ADDR SECONDS CONNECTIONS [PATH] | loadgen whoami-serve ADDR | loadgen whoami ADDR COUNT"
            );
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn arguments_name_the_mode() {
        assert_eq!(
            parse(&args("http 127.0.0.1:80 10 4")),
            Some(Mode::Http {
                addr: "127.0.0.1:80",
                seconds: 10,
                connections: 4,
                path: "/"
            })
        );
        assert_eq!(
            parse(&args("http web:80 1 2 /x")).map(|m| matches!(m, Mode::Http { path: "/x", .. })),
            Some(true)
        );
        assert_eq!(parse(&args("http web:80 1 0")), None);
        assert_eq!(
            parse(&args("whoami-serve 0.0.0.0:7000")),
            Some(Mode::WhoamiServe("0.0.0.0:7000"))
        );
        assert_eq!(
            parse(&args("whoami web:7000 3")),
            Some(Mode::Whoami {
                addr: "web:7000",
                count: 3
            })
        );
        assert_eq!(parse(&args("other")), None);
    }

    #[test]
    fn responses_are_read_to_their_end() {
        let two = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 404 Not Found\r\n\
                    Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n\
                    HTTP/1.1 204 No Content\r\n\r\n";
        let mut reader = BufReader::new(&two[..]);
        assert_eq!(read_response(&mut reader).expect("first"), 200);
        assert_eq!(read_response(&mut reader).expect("second"), 404);
        assert_eq!(read_response(&mut reader).expect("third"), 204);
        assert!(read_response(&mut reader).is_err());
    }
}
