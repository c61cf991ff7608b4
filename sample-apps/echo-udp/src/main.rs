//! `echo-udp` — an ordinary `std::net` program for wasm32-wasip2 (a command component) that knows nothing of
//! herd: what a Rust UDP server in a container does.
//!
//! `echo-udp ADDR` binds a `UdpSocket` on `ADDR` (e.g. `0.0.0.0:5300`), prints `listening on <local
//! address>` and answers every datagram with `echo: ` followed by the datagram, for ever. A failed bind
//! prints `bind ADDR: <error>` and exits 1.

use std::net::UdpSocket;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr] = args.as_slice() else {
        println!("usage: echo-udp ADDR");
        std::process::exit(2);
    };
    let socket = match UdpSocket::bind(addr) {
        Ok(socket) => socket,
        Err(e) => {
            println!("bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    match socket.local_addr() {
        Ok(local) => println!("listening on {local}"),
        Err(e) => println!("listening on {addr} ({e})"),
    }
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let mut reply = b"echo: ".to_vec();
                reply.extend_from_slice(&buf[..n]);
                if let Err(e) = socket.send_to(&reply, from) {
                    println!("send to {from}: {e}");
                }
            }
            Err(e) => println!("receive: {e}"),
        }
    }
}
