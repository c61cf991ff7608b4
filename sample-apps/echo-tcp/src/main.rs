//! `echo-tcp` — an ordinary `std::net` program for wasm32-wasip2 (a command component) that knows nothing of
//! herd: what a Rust server or sidecar in a container does.
//!
//! - `echo-tcp serve ADDR` binds a `TcpListener` on `ADDR` (e.g. `0.0.0.0:7000`), prints
//!   `listening on <local address>` and answers every line a client sends with `echo: <line>`, one client
//!   after another, for ever. A failed bind prints `bind ADDR: <error>` and exits 1 (as a server does).
//! - `echo-tcp client ADDR` connects to `ADDR` (e.g. `localhost:7000`; names are resolved), sends
//!   `ping N`, prints `reply: <line>` for the answer, then does it again a second later, for ever. A failed
//!   attempt prints `connect ADDR: <error>` and is retried a second later (the server may start later).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// What the arguments ask for.
#[derive(Debug, PartialEq, Eq)]
enum Mode<'a> {
    Serve(&'a str),
    Client(&'a str),
}

fn parse(args: &[String]) -> Option<Mode<'_>> {
    match args {
        [mode, addr] if mode == "serve" => Some(Mode::Serve(addr)),
        [mode, addr] if mode == "client" => Some(Mode::Client(addr)),
        _ => None,
    }
}

fn serve(addr: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).inspect_err(|e| println!("bind {addr}: {e}"))?;
    println!("listening on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = echo(stream) {
                    println!("client: {e}");
                }
            }
            Err(e) => println!("accept: {e}"),
        }
    }
    Ok(())
}

/// Answers each line of one client until it hangs up. (Reads and writes go through `&TcpStream`:
/// WASI has no `dup`, so `try_clone` is not supported.)
fn echo(stream: TcpStream) -> std::io::Result<()> {
    for line in BufReader::new(&stream).lines() {
        writeln!(&stream, "echo: {}", line?)?;
    }
    Ok(())
}

/// One exchange: connect, send `ping N`, read the answer.
fn ping(addr: &str, n: u64) -> std::io::Result<String> {
    let stream = TcpStream::connect(addr)?;
    writeln!(&stream, "ping {n}")?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    Ok(reply.trim_end().to_owned())
}

fn client(addr: &str) -> ! {
    for n in 1.. {
        match ping(addr, n) {
            Ok(reply) => println!("reply: {reply}"),
            Err(e) => println!("connect {addr}: {e}"),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    unreachable!("the counter does not run out")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Some(Mode::Serve(addr)) => {
            if serve(addr).is_err() {
                std::process::exit(1);
            }
        }
        Some(Mode::Client(addr)) => client(addr),
        None => {
            eprintln!("usage: echo-tcp serve ADDR | echo-tcp client ADDR");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_pick_the_mode() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse(&args(&["serve", "0.0.0.0:7000"])),
            Some(Mode::Serve("0.0.0.0:7000"))
        );
        assert_eq!(
            parse(&args(&["client", "localhost:7000"])),
            Some(Mode::Client("localhost:7000"))
        );
        assert_eq!(parse(&args(&["serve"])), None);
    }
}
