//! Replacing a file's content durably and atomically: the bytes go to a hidden temporary file beside it
//! (a dot file, so directory listings that skip those never see it), are synced, and the temporary file is
//! renamed over the target. A reader sees the old content or all of the new, a crash leaves one of the
//! two, and a failed write leaves no temporary file behind. The node's image and compiled-code files and
//! the registry's manifests are written this way; a pod's volume files, rebuilt whenever the pod starts, are
//! replaced atomically without the sync ([`replace`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` atomically, creating the parent directory if needed.
///
/// # Errors
/// The first I/O error (the temporary file is removed then, `path` left as it was).
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, None, true)
}

/// [`write`] for secrets (private keys, kubeconfigs with credentials): the file is created with mode 0600,
/// so no other user can read it at any moment, not even the temporary file before the rename.
///
/// # Errors
/// As [`write`].
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, Some(0o600), true)
}

/// Replaces `path` atomically with `bytes` and `mode` — a reader sees the old content or the new, never part
/// of either — without waiting for the disk: for files rebuilt from elsewhere after a crash (a pod's
/// ConfigMap, Secret and projected volume files, which the node writes again when the pod starts), as the
/// kubelet's atomic writer replaces them on its tmpfs. The file is created with `mode`, so it is never more
/// open than asked.
///
/// # Errors
/// As [`write`].
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_with_mode(path, bytes, Some(mode), false)
}

fn write_with_mode(
    path: &Path,
    bytes: &[u8],
    mode: Option<u32>,
    durable: bool,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().ok_or_else(|| {
        std::io::Error::other(format!("{} has no parent directory", path.display()))
    })?;
    std::fs::create_dir_all(dir)?;
    let temp = temp_path(dir, path);
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        if let Some(mode) = mode {
            options.mode(mode);
        }
        let mut file = options.open(&temp)?;
        if let Some(mode) = mode {
            // A stale temporary file of the same name keeps its old mode through `open`.
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// [`write`] on a blocking thread, for async callers.
///
/// # Errors
/// As [`write`], or the blocking task failing.
pub async fn write_async(path: PathBuf, bytes: Vec<u8>) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || write(&path, &bytes))
        .await
        .map_err(std::io::Error::other)?
}

/// `.<name>.<pid>.<n>.tmp` beside the target: unique among this process's writes and other processes'.
fn temp_path(dir: &Path, path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_content_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested").join("file");
        write(&path, b"old").expect("first write, creating the directory");
        write(&path, b"new content").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"new content");
        assert_eq!(entries(&dir.path().join("nested")), ["file"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_content_and_no_temporary_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A directory where the file should be: the rename fails after the bytes were written.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).expect("mkdir");
        std::fs::write(path.join("inside"), b"kept").expect("write");
        assert!(write(&path, b"new").is_err());
        assert_eq!(entries(dir.path()), ["taken"]);
        assert_eq!(std::fs::read(path.join("inside")).expect("read"), b"kept");
    }

    #[test]
    fn private_files_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("key");
        write_private(&path, b"secret").expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).expect("read"), b"secret");
        assert_eq!(entries(dir.path()), ["key"]);
    }

    #[test]
    fn replace_gives_the_new_content_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token");
        write(&path, b"old").expect("write");
        replace(&path, b"new", 0o440).expect("replace");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o440);
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        assert_eq!(entries(dir.path()), ["token"]);
    }

    #[tokio::test]
    async fn async_callers_get_the_same() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        write_async(path.clone(), b"bytes".to_vec())
            .await
            .expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"bytes");
        assert_eq!(entries(dir.path()), ["f"]);
    }
}
