//! Moving a cluster from SQLite onto etcd: `herd control --store etcd` on a data dir that holds a SQLite
//! store (`herd.db`) and an etcd prefix that holds nothing copies every object, at its current state, into
//! etcd (uid, creationTimestamp and everything else kept; the resourceVersions become etcd revisions), then
//! renames `herd.db` to `herd.db.imported-<unix time>` so that it is not imported again. An etcd prefix
//! that holds objects already is never written over: with objects on both sides the start fails, naming
//! both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use super::EtcdStore;
use crate::encryption::Encryption;
use crate::storage::{ListOptions, Storage, StoreError};
use crate::store::{Store, StoreSync};

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "both {sqlite} and etcd ({servers}, prefix {prefix}) hold objects: refusing to import over \
         etcd's (move {sqlite} away to use etcd's objects, or use another --etcd-prefix to import)"
    )]
    BothHoldData {
        sqlite: PathBuf,
        servers: String,
        prefix: String,
    },
    #[error("importing {path} into etcd: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error("renaming {path} after the import: {source}")]
    Rename {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub objects: usize,
    /// Where `herd.db` is now.
    pub renamed_to: PathBuf,
}

/// Imports `data_dir/herd.db` into `etcd` when there is one with objects in it and etcd's prefix is empty;
/// `None` when there was nothing to import.
///
/// # Errors
/// Objects on both sides, a store failing, the rename failing.
pub async fn import_sqlite(
    data_dir: &Path,
    etcd: &EtcdStore,
    encryption: Arc<Encryption>,
) -> Result<Option<Imported>, ImportError> {
    let db = data_dir.join("herd.db");
    if !db.exists() {
        return Ok(None);
    }
    let fail = |source| ImportError::Store {
        path: db.clone(),
        source,
    };
    let sqlite = Store::open_encrypted(&db, StoreSync::Full, encryption)
        .await
        .map_err(fail)?;
    let result = copy(&sqlite, etcd, &db).await;
    sqlite.close().await;
    let objects = match result {
        Ok(Some(objects)) => objects,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e),
    };
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let renamed_to = data_dir.join(format!("herd.db.imported-{at}"));
    std::fs::rename(&db, &renamed_to).map_err(|source| ImportError::Rename {
        path: db.clone(),
        source,
    })?;
    // SQLite's side files go with it (closed cleanly they are usually gone already).
    for side in ["-wal", "-shm"] {
        let from = data_dir.join(format!("herd.db{side}"));
        if from.exists() {
            let to = data_dir.join(format!("herd.db.imported-{at}{side}"));
            std::fs::rename(&from, &to).map_err(|source| ImportError::Rename {
                path: from.clone(),
                source,
            })?;
        }
    }
    tracing::info!(objects, from = %db.display(), to = %renamed_to.display(), servers = etcd.servers(), "imported the SQLite store into etcd");
    Ok(Some(Imported {
        objects,
        renamed_to,
    }))
}

/// Copies every object; `None` when SQLite holds none.
async fn copy(sqlite: &Store, etcd: &EtcdStore, db: &Path) -> Result<Option<usize>, ImportError> {
    let fail = |source| ImportError::Store {
        path: db.to_path_buf(),
        source,
    };
    // Namespaces first, so that a cluster half imported still makes sense.
    let mut resources: Vec<String> = herd_api::resources::RESOURCES
        .iter()
        .map(herd_api::resources::ResourceInfo::key)
        .collect();
    resources.sort_by_key(|r| r != "namespaces");
    resources.dedup();
    let mut lists = Vec::with_capacity(resources.len());
    for resource in resources {
        let page = Storage::list(sqlite, &resource, ListOptions::default())
            .await
            .map_err(fail)?;
        if !page.items.is_empty() {
            lists.push((resource, page.items));
        }
    }
    if lists.is_empty() {
        return Ok(None);
    }
    if !etcd.is_empty().await.map_err(fail)? {
        return Err(ImportError::BothHoldData {
            sqlite: db.to_path_buf(),
            servers: etcd.servers().to_string(),
            prefix: etcd.root().trim_end_matches('/').to_string(),
        });
    }
    let mut objects = 0;
    for (resource, items) in lists {
        objects += items.len();
        futures::stream::iter(items)
            .map(|text| {
                let resource = resource.as_str();
                async move {
                    let object: serde_json::Value = serde_json::from_str(&text)?;
                    let namespace = object
                        .pointer("/metadata/namespace")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let name = object
                        .pointer("/metadata/name")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    // Refused only if it is there already (a second run after a failed rename).
                    let _ = etcd
                        .create_object(resource, &namespace, &name, object, None)
                        .await?;
                    Ok::<_, StoreError>(())
                }
            })
            .buffer_unordered(32)
            .try_collect::<()>()
            .await
            .map_err(fail)?;
    }
    Ok(Some(objects))
}
