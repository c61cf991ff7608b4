//! Reusing compiled code: an in-memory map from key to linked workload, and
//! an on-disk cache of wasmtime's serialized code, keyed by the caller's key
//! (an image digest) and the engine's compatibility hash.
//!
//! An entry is two files: `<key hash>-<engine hash>.cwasm` (exactly what
//! wasmtime serialized, so it can be mapped) and `….sha256` (its checksum,
//! hex). Both are written to a temporary name and renamed into place, the
//! code first: a reader that finds no checksum, or one that does not match,
//! treats the entry as missing or corrupt, removes it and recompiles.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module, Precompiled};

use crate::error::RuntimeError;
use crate::runtime::Code;
use crate::workload::Compiled;

/// Where [`Runtime::load_cached`](crate::Runtime::load_cached) got the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Compiled now (and written to the disk cache, if there is one).
    Compiled,
    /// Mapped from a valid disk cache entry.
    FromDisk,
    /// Loaded before by this runtime.
    FromMemory,
}

/// Linked workloads by key, for the life of the runtime.
#[derive(Default)]
pub(crate) struct MemoryCache(Mutex<HashMap<String, Compiled>>);

impl MemoryCache {
    pub(crate) fn get(&self, key: &str) -> Option<Compiled> {
        match self.0.lock() {
            Ok(map) => map.get(key).cloned(),
            Err(poisoned) => poisoned.into_inner().get(key).cloned(),
        }
    }

    pub(crate) fn insert(&self, key: &str, compiled: Compiled) {
        match self.0.lock() {
            Ok(mut map) => map.insert(key.to_owned(), compiled),
            Err(poisoned) => poisoned.into_inner().insert(key.to_owned(), compiled),
        };
    }
}

/// The on-disk cache of one engine configuration.
pub(crate) struct DiskCache {
    dir: PathBuf,
    /// Hex of the engine's precompile compatibility hash (after its label,
    /// if any): entries of another wasmtime version, configuration or engine
    /// role have other names.
    engine_hash: String,
}

impl DiskCache {
    /// The cache in `dir` for `engine`; `label` (empty for none) names the
    /// engine's role in every entry, so two engines' entries never share a
    /// name even if their compatibility hashes were equal.
    pub(crate) fn open(dir: PathBuf, engine: &Engine, label: &str) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(&dir)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let hash = hasher.finish();
        Ok(Self {
            dir,
            engine_hash: if label.is_empty() {
                format!("{hash:016x}")
            } else {
                format!("{label}-{hash:016x}")
            },
        })
    }

    /// The code and checksum paths of `key`'s entry.
    pub(crate) fn paths(&self, key: &str) -> (PathBuf, PathBuf) {
        let key_hash = hex::encode(Sha256::digest(key.as_bytes()));
        let stem = format!("{key_hash}-{}", self.engine_hash);
        (
            self.dir.join(format!("{stem}.cwasm")),
            self.dir.join(format!("{stem}.sha256")),
        )
    }

    /// The entry's code if it exists and is intact; a corrupt entry is
    /// removed.
    pub(crate) fn get(&self, engine: &Engine, key: &str) -> Option<Code> {
        let (code_path, sum_path) = self.paths(key);
        let expected = std::fs::read_to_string(&sum_path).ok()?;
        let intact = std::fs::read(&code_path)
            .is_ok_and(|bytes| hex::encode(Sha256::digest(&bytes)) == expected.trim());
        if intact && let Some(code) = deserialize(engine, &code_path) {
            return Some(code);
        }
        tracing::warn!(path = %code_path.display(), "removing a corrupt compiled-code cache entry");
        let _ = std::fs::remove_file(&sum_path);
        let _ = std::fs::remove_file(&code_path);
        None
    }

    /// Writes `key`'s entry; failures are logged (the cache is an
    /// optimisation).
    pub(crate) fn put(&self, key: &str, code: &Code) {
        let serialized = match code {
            Code::Module(module) => module.serialize(),
            Code::Component(component) => component.serialize(),
        };
        let result = serialized.map_err(std::io::Error::other).and_then(|bytes| {
            let (code_path, sum_path) = self.paths(key);
            let sum = hex::encode(Sha256::digest(&bytes));
            herd_atomic_file::write(&code_path, &bytes)?;
            herd_atomic_file::write(&sum_path, sum.as_bytes())
        });
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the compiled-code cache");
        }
    }
}

/// Maps a serialized module or component.
#[allow(unsafe_code)] // The one unsafe call of herd; see the SAFETY comment.
fn deserialize(engine: &Engine, path: &Path) -> Option<Code> {
    let kind = Engine::detect_precompiled_file(path).ok().flatten()?;
    // SAFETY: wasmtime requires that the file be code it serialized itself,
    // for a compatible engine, and not change while mapped. This file is in
    // the runtime's private cache directory, was written by `DiskCache::put`
    // from `Module::serialize`/`Component::serialize` (and renamed into
    // place only after it was complete), its name carries this engine's
    // compatibility hash, and its SHA-256 was just checked against the
    // checksum written with it, so it is not truncated or corrupt. Entries
    // are only ever replaced by rename, never modified in place, so the
    // mapped file does not change underneath wasmtime.
    let loaded = unsafe {
        match kind {
            Precompiled::Module => Module::deserialize_file(engine, path).map(Code::Module),
            Precompiled::Component => {
                Component::deserialize_file(engine, path).map(Code::Component)
            }
        }
    };
    loaded.ok()
}
