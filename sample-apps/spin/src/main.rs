//! `spin` — a WASI preview 1 command that prints `spinning` once, then loops forever doing arithmetic with
//! no syscalls at all. It never yields to the host, so it shows that herd can stop a guest stuck in a loop
//! (wasmtime epoch interruption) rather than waiting for it to cooperate.

use std::hint::black_box;
use std::io::Write as _;

fn main() {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(b"spinning\n");
    let _ = stdout.flush();
    drop(stdout);

    let mut state: u64 = black_box(0x9E37_79B9_7F4A_7C15);
    loop {
        // xorshift64: cheap, never settles, and black_box keeps the optimiser from removing it.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state = black_box(state);
    }
}
