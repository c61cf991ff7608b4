//! `netcheck` — a WASI preview 2 command (wasm32-wasip2, a component exporting `wasi:cli/run`) that tries
//! the socket operations named in its arguments, through `wasi:sockets`, and prints one line per attempt:
//!
//! - `bind=ADDR:PORT` binds a TCP listener: `bind ADDR:PORT: ok` or `bind ADDR:PORT: error <why>`;
//! - `connect=ADDR:PORT` opens a TCP connection: `connect ADDR:PORT: ok` or `connect ADDR:PORT: error <why>`.
//!
//! Other arguments are ignored. It then exits 0, so a pod shows what its sandbox allows.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// One attempt, as parsed from an argument.
#[derive(Debug, PartialEq, Eq)]
enum Attempt<'a> {
    Bind(&'a str),
    Connect(&'a str),
}

fn parse(arg: &str) -> Option<Attempt<'_>> {
    if let Some(addr) = arg.strip_prefix("bind=") {
        Some(Attempt::Bind(addr))
    } else {
        arg.strip_prefix("connect=").map(Attempt::Connect)
    }
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
                let result = addr
                    .parse()
                    .map_err(|e| {
                        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}"))
                    })
                    .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)));
                println!("connect {addr}: {}", outcome(result));
            }
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
        assert_eq!(parse("other"), None);
    }
}
