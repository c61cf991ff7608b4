//! `netcheck` — a WASI preview 2 command (wasm32-wasip2, a component exporting `wasi:cli/run`) that tries
//! the socket operations named in its arguments, through `wasi:sockets`, and prints one line per attempt:
//!
//! - `bind=ADDR:PORT` binds a TCP listener: `bind ADDR:PORT: ok` or `bind ADDR:PORT: error <why>`;
//! - `connect=HOST:PORT` opens a TCP connection: `connect HOST:PORT: ok` or `connect HOST:PORT: error <why>`;
//! - `resolve=NAME` looks a name up (`ToSocketAddrs`, i.e. wasi-libc's `getaddrinfo` over
//!   `wasi:sockets/ip-name-lookup`): `resolve NAME: IP IP…` or `resolve NAME: error <why>`;
//! - `get=HOST:PORT/PATH` sends `GET /PATH` over HTTP/1.0 and prints the status line and the body's
//!   first line: `get HOST:PORT/PATH: HTTP/1.1 200 OK | <line>` or `get …: error <why>`.
//!
//! A HOST may be an address or a name (looked up as `resolve=` does). Other arguments are ignored. It then
//! exits 0, so a pod shows what its sandbox allows.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// One attempt, as parsed from an argument.
#[derive(Debug, PartialEq, Eq)]
enum Attempt<'a> {
    Bind(&'a str),
    Connect(&'a str),
    Resolve(&'a str),
    Get(&'a str),
}

fn parse(arg: &str) -> Option<Attempt<'_>> {
    if let Some(addr) = arg.strip_prefix("bind=") {
        Some(Attempt::Bind(addr))
    } else if let Some(name) = arg.strip_prefix("resolve=") {
        Some(Attempt::Resolve(name))
    } else if let Some(target) = arg.strip_prefix("get=") {
        Some(Attempt::Get(target))
    } else {
        arg.strip_prefix("connect=").map(Attempt::Connect)
    }
}

/// A TCP connection to `host:port`, a name tried address by address.
fn connect(target: &str) -> std::io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = target.to_socket_addrs()?.collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `GET /path` from `host:port/path`: the status line and the body's first line.
fn get(target: &str) -> std::io::Result<String> {
    let (authority, path) = target.split_once('/').unwrap_or((target, ""));
    let mut stream = connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    let request = format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.lines().next().unwrap_or_default())
        .unwrap_or_default();
    Ok(format!("{status} | {body}"))
}

fn outcome<T>(result: std::io::Result<T>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => format!("error {e}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Listeners stay open until exit, so two binds of one address show the second refused.
    let mut listeners = Vec::new();
    for arg in &args {
        match parse(arg) {
            Some(Attempt::Bind(addr)) => match TcpListener::bind(addr) {
                Ok(listener) => {
                    println!("bind {addr}: ok");
                    listeners.push(listener);
                }
                Err(e) => println!("bind {addr}: error {e}"),
            },
            Some(Attempt::Connect(addr)) => {
                println!("connect {addr}: {}", outcome(connect(addr)));
            }
            Some(Attempt::Resolve(name)) => match (name, 0).to_socket_addrs() {
                Ok(addrs) => {
                    let ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                    println!("resolve {name}: {}", ips.join(" "));
                }
                Err(e) => println!("resolve {name}: error {e}"),
            },
            Some(Attempt::Get(target)) => match get(target) {
                Ok(answer) => println!("get {target}: {answer}"),
                Err(e) => println!("get {target}: error {e}"),
            },
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_name_the_attempts() {
        assert_eq!(parse("bind=1.2.3.4:80"), Some(Attempt::Bind("1.2.3.4:80")));
        assert_eq!(
            parse("connect=1.2.3.4:80"),
            Some(Attempt::Connect("1.2.3.4:80"))
        );
        assert_eq!(parse("resolve=web"), Some(Attempt::Resolve("web")));
        assert_eq!(parse("get=web:80/x"), Some(Attempt::Get("web:80/x")));
        assert_eq!(parse("other"), None);
    }
}
