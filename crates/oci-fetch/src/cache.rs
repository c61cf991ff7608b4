//! The local cache: blobs by digest (`blobs/sha256/<hex>`) and an index of image references
//! (`refs/<sha256 of the reference>.json` → manifest and layer digest).
//!
//! Every file is written to a temporary name in its final directory and renamed into place, so a
//! reader sees either nothing or a whole file. Blobs are re-verified against their digest on every
//! read; a blob that fails is deleted and reported as [`FetchError::DigestMismatch`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::FetchError;
use crate::artifact::{parse_sha256, sha256_digest};

/// What the index remembers about one image reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefEntry {
    pub image: String,
    pub manifest_digest: String,
    pub layer_digest: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: PathBuf) -> Self {
        Cache { dir }
    }

    /// Where the blob with `digest` (`sha256:<hex>`, already validated) lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = parse_sha256(digest).unwrap_or("invalid");
        self.dir.join("blobs").join("sha256").join(hex)
    }

    /// The cached blob with `digest`, verified; `None` if it is not cached.
    pub async fn read_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, FetchError> {
        let path = self.blob_path(digest);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let actual = sha256_digest(&bytes);
        if actual != digest {
            tracing::warn!(path = %path.display(), expected = digest, %actual, "corrupt cached blob, removing it");
            remove_if_exists(&path).await?;
            return Err(FetchError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(Some(bytes))
    }

    /// Verifies `bytes` against `digest` and stores them; returns the blob's path.
    pub async fn write_blob(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, FetchError> {
        let actual = sha256_digest(bytes);
        if actual != digest {
            return Err(FetchError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        let path = self.blob_path(digest);
        herd_atomic_file::write_async(path.clone(), bytes.to_vec()).await?;
        Ok(path)
    }

    fn ref_path(&self, image: &str) -> PathBuf {
        let key = sha256_digest(image.as_bytes());
        let hex = key.trim_start_matches("sha256:");
        self.dir.join("refs").join(format!("{hex}.json"))
    }

    /// The index entry for the full reference `image`, if any (an unreadable entry counts as none).
    pub async fn read_ref(&self, image: &str) -> Result<Option<RefEntry>, FetchError> {
        let bytes = match tokio::fs::read(self.ref_path(image)).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match serde_json::from_slice::<RefEntry>(&bytes) {
            Ok(entry)
                if entry.image == image
                    && parse_sha256(&entry.manifest_digest).is_some()
                    && parse_sha256(&entry.layer_digest).is_some() =>
            {
                Ok(Some(entry))
            }
            _ => {
                tracing::warn!(image, "ignoring an unreadable image index entry");
                Ok(None)
            }
        }
    }

    pub async fn write_ref(&self, entry: &RefEntry) -> Result<(), FetchError> {
        let bytes = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        herd_atomic_file::write_async(self.ref_path(&entry.image), bytes).await?;
        Ok(())
    }
}

async fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let digest = sha256_digest(b"\0asm hello");
        assert_eq!(cache.read_blob(&digest).await.unwrap(), None);

        let path = cache.write_blob(&digest, b"\0asm hello").await.unwrap();
        assert_eq!(
            path,
            dir.path()
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        );
        assert_eq!(
            cache.read_blob(&digest).await.unwrap().unwrap(),
            b"\0asm hello"
        );

        std::fs::write(&path, b"tampered").unwrap();
        let err = cache.read_blob(&digest).await.unwrap_err();
        assert!(matches!(err, FetchError::DigestMismatch { .. }), "{err}");
        assert!(!path.exists(), "a corrupt blob is removed");
    }

    #[tokio::test]
    async fn bytes_that_do_not_match_their_digest_are_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let digest = sha256_digest(b"one");
        let err = cache.write_blob(&digest, b"two").await.unwrap_err();
        assert!(matches!(err, FetchError::DigestMismatch { .. }), "{err}");
        assert!(!cache.blob_path(&digest).exists());
    }

    #[tokio::test]
    async fn ref_index_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let entry = RefEntry {
            image: "127.0.0.1:5000/app:v1".to_string(),
            manifest_digest: sha256_digest(b"m"),
            layer_digest: sha256_digest(b"l"),
        };
        assert_eq!(cache.read_ref(&entry.image).await.unwrap(), None);
        cache.write_ref(&entry).await.unwrap();
        assert_eq!(
            cache.read_ref(&entry.image).await.unwrap(),
            Some(entry.clone())
        );
        assert_eq!(cache.read_ref("127.0.0.1:5000/app:v2").await.unwrap(), None);

        std::fs::write(cache.ref_path(&entry.image), b"{not json").unwrap();
        assert_eq!(cache.read_ref(&entry.image).await.unwrap(), None);
    }
}
