//! The registry's files under its root directory:
//!
//! ```text
//! blobs/sha256/<hex>                                  content (layers, configs, manifests)
//! repositories/<name>/_layers/sha256/<hex>            the repository has this blob (empty file)
//! repositories/<name>/_manifests/revisions/sha256/<hex>  … has this manifest (its content type)
//! repositories/<name>/_manifests/tags/<tag>           the tag's manifest digest
//! repositories/<name>/_uploads/<uuid>                 an upload in progress
//! ```
//!
//! Names, tags, digests and upload ids are validated before they reach a path, and repository
//! name components start with `[a-z0-9]`, so they never collide with the `_` directories.
//! Finished files are renamed into place, so readers never see partial content.

use std::path::{Path, PathBuf};

use axum::body::Body;
use futures::StreamExt;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::ApiError;

#[derive(Debug, Clone)]
pub(crate) struct Storage {
    root: PathBuf,
}

impl Storage {
    pub fn new(root: PathBuf) -> Self {
        Storage { root }
    }

    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("blobs").join("sha256").join(hex)
    }

    fn repo_dir(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }

    fn layer_link(&self, name: &str, hex: &str) -> PathBuf {
        self.repo_dir(name).join("_layers").join("sha256").join(hex)
    }

    fn manifest_link(&self, name: &str, hex: &str) -> PathBuf {
        self.repo_dir(name)
            .join("_manifests")
            .join("revisions")
            .join("sha256")
            .join(hex)
    }

    fn tags_dir(&self, name: &str) -> PathBuf {
        self.repo_dir(name).join("_manifests").join("tags")
    }

    fn upload_path(&self, name: &str, id: &str) -> Result<PathBuf, ApiError> {
        let id = uuid::Uuid::parse_str(id).map_err(|_| ApiError::upload_unknown())?;
        Ok(self.repo_dir(name).join("_uploads").join(id.to_string()))
    }

    /// Whether the repository exists (something was ever pushed to it).
    pub async fn repo_exists(&self, name: &str) -> Result<bool, ApiError> {
        Ok(tokio::fs::try_exists(self.repo_dir(name)).await?)
    }

    /// The size of blob `hex` if the repository has it.
    pub async fn blob_size(&self, name: &str, hex: &str) -> Result<Option<u64>, ApiError> {
        if !tokio::fs::try_exists(self.layer_link(name, hex)).await? {
            return Ok(None);
        }
        match tokio::fs::metadata(self.blob_path(hex)).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Links blob `hex`, which must exist in the blob store, into the repository.
    pub async fn link_blob(&self, name: &str, hex: &str) -> Result<(), ApiError> {
        herd_atomic_file::write_async(self.layer_link(name, hex), Vec::new()).await?;
        Ok(())
    }

    /// Starts an upload; returns its id.
    pub async fn start_upload(&self, name: &str) -> Result<String, ApiError> {
        let id = uuid::Uuid::new_v4().to_string();
        let path = self.upload_path(name, &id)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::File::create(&path).await?;
        Ok(id)
    }

    /// The number of bytes received so far by upload `id`.
    pub async fn upload_size(&self, name: &str, id: &str) -> Result<u64, ApiError> {
        match tokio::fs::metadata(self.upload_path(name, id)?).await {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::upload_unknown()),
            Err(e) => Err(e.into()),
        }
    }

    /// Appends `body` to upload `id`; returns its new size.
    pub async fn append_upload(&self, name: &str, id: &str, body: Body) -> Result<u64, ApiError> {
        let path = self.upload_path(name, id)?;
        let mut file = match tokio::fs::OpenOptions::new().append(true).open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ApiError::upload_unknown());
            }
            Err(e) => return Err(e.into()),
        };
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::upload_invalid(format!("reading body: {e}")))?;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(file.metadata().await?.len())
    }

    /// Finishes upload `id`: checks that its content hashes to `hex`, moves it into the blob store
    /// and links it into the repository. A mismatching upload is discarded.
    pub async fn commit_upload(&self, name: &str, id: &str, hex: &str) -> Result<(), ApiError> {
        let path = self.upload_path(name, id)?;
        let actual = match sha256_file(&path).await {
            Ok(actual) => actual,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ApiError::upload_unknown());
            }
            Err(e) => return Err(e.into()),
        };
        if actual != hex {
            remove_if_exists(&path).await?;
            return Err(ApiError::digest_invalid(format!(
                "provided digest sha256:{hex} does not match uploaded content sha256:{actual}"
            )));
        }
        let blob = self.blob_path(hex);
        if let Some(dir) = blob.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::File::open(&path).await?.sync_all().await?;
        tokio::fs::rename(&path, &blob).await?;
        self.link_blob(name, hex).await
    }

    /// Abandons upload `id`.
    pub async fn cancel_upload(&self, name: &str, id: &str) -> Result<(), ApiError> {
        let path = self.upload_path(name, id)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::upload_unknown()),
            other => Ok(other?),
        }
    }

    /// Stores `content` in the blob store (unverified: the caller computed `hex` from it).
    pub async fn store_blob(&self, hex: &str, content: &[u8]) -> Result<(), ApiError> {
        herd_atomic_file::write_async(self.blob_path(hex), content.to_vec()).await?;
        Ok(())
    }

    /// Records manifest `hex` (already in the blob store) in the repository, with its content type.
    pub async fn link_manifest(
        &self,
        name: &str,
        hex: &str,
        content_type: &str,
    ) -> Result<(), ApiError> {
        herd_atomic_file::write_async(
            self.manifest_link(name, hex),
            content_type.as_bytes().to_vec(),
        )
        .await?;
        Ok(())
    }

    /// The content type of manifest `hex` if the repository has it.
    pub async fn manifest_content_type(
        &self,
        name: &str,
        hex: &str,
    ) -> Result<Option<String>, ApiError> {
        match tokio::fs::read_to_string(self.manifest_link(name, hex)).await {
            Ok(content_type) => Ok(Some(content_type)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn set_tag(&self, name: &str, tag: &str, digest: &str) -> Result<(), ApiError> {
        herd_atomic_file::write_async(self.tags_dir(name).join(tag), digest.as_bytes().to_vec())
            .await?;
        Ok(())
    }

    /// The digest `tag` points at, if the tag exists.
    pub async fn tag(&self, name: &str, tag: &str) -> Result<Option<String>, ApiError> {
        match tokio::fs::read_to_string(self.tags_dir(name).join(tag)).await {
            Ok(digest) => Ok(Some(digest)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The repository's tags, sorted.
    pub async fn tags(&self, name: &str) -> Result<Vec<String>, ApiError> {
        let mut tags = Vec::new();
        let mut entries = match tokio::fs::read_dir(self.tags_dir(name)).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(tags),
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = entries.next_entry().await? {
            if let Some(tag) = entry.file_name().to_str()
                && !tag.starts_with('.')
            {
                tags.push(tag.to_string());
            }
        }
        tags.sort();
        Ok(tags)
    }

    /// Opens blob `hex` for reading.
    pub async fn open_blob(&self, hex: &str) -> Result<tokio::fs::File, ApiError> {
        match tokio::fs::File::open(self.blob_path(hex)).await {
            Ok(file) => Ok(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::blob_unknown()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn read_blob(&self, hex: &str) -> Result<Vec<u8>, ApiError> {
        let mut content = Vec::new();
        self.open_blob(hex).await?.read_to_end(&mut content).await?;
        Ok(content)
    }
}

/// The sha256 hex of a file's content.
async fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

async fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
