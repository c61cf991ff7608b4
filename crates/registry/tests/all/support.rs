//! Shared helpers: an embedded registry on a free loopback port, and test Wasm binaries.

use std::path::PathBuf;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `herd_registry::serve` on `127.0.0.1:<free port>`, storing in a temporary directory.
pub struct EmbeddedRegistry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    pub root: PathBuf,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl EmbeddedRegistry {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("registry");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr").to_string();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(herd_registry::serve(
            listener,
            root.clone(),
            shutdown.clone(),
        ));
        EmbeddedRegistry {
            addr,
            root,
            shutdown,
            task,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cancels the server and waits until it has stopped listening.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        (&mut self.task)
            .await
            .expect("registry task")
            .expect("registry serve");
    }
}

impl Drop for EmbeddedRegistry {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A valid core Wasm module: the header plus one custom section named `herd` holding `payload`.
pub fn wasm_module(payload: &[u8]) -> Vec<u8> {
    let mut section = Vec::new();
    leb128(&mut section, 4);
    section.extend_from_slice(b"herd");
    section.extend_from_slice(payload);
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    wasm.push(0); // custom section
    leb128(&mut wasm, section.len() as u64);
    wasm.extend_from_slice(&section);
    wasm
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The path of the blob with `digest` under a cache or registry root.
pub fn blob_path(root: &std::path::Path, digest: &str) -> PathBuf {
    root.join("blobs")
        .join("sha256")
        .join(digest.trim_start_matches("sha256:"))
}
