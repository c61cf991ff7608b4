//! kube-apiserver's compactor (k8s.io/apiserver/pkg/storage/etcd3/compact.go): every interval, compact etcd
//! to the revision seen one interval before. Replicas take turns through the `compact_rev_key` key: each
//! compares its version with the one it last saw and bumps it in the same transaction, so in each interval
//! only the first replica compacts; the others learn the key's version and try again next interval.

use std::time::Duration;

use std::sync::Arc;

use etcd_client::{CompactionOptions, Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use super::endpoints::Endpoints;
use tokio_util::sync::CancellationToken;

use crate::storage::StoreError;

/// The key replicas coordinate through (kube's, outside any prefix: etcd compacts every prefix at once).
pub(super) const COMPACT_REV_KEY: &str = "compact_rev_key";

/// Runs the compactor until `closed`.
pub(super) async fn run(endpoints: Arc<Endpoints>, every: Duration, closed: CancellationToken) {
    // The key's version last seen, and the revision seen at the last turn.
    let (mut version, mut rev) = (0, 0);
    loop {
        tokio::select! {
            () = closed.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match step(&endpoints, version, rev).await {
            Ok((v, r)) => (version, rev) = (v, r),
            Err(e) => tracing::warn!(error = %e, "compacting etcd"),
        }
    }
}

/// One turn: when `compact_rev_key`'s version is still `version`, claim the turn and compact to `rev`
/// (not at the first turn, `rev` 0). Returns the key's version now and etcd's current revision (the next
/// turn's target).
pub(super) async fn step(
    endpoints: &Endpoints,
    version: i64,
    rev: i64,
) -> Result<(i64, i64), StoreError> {
    let txn = Txn::new()
        .when(vec![Compare::version(
            COMPACT_REV_KEY,
            CompareOp::Equal,
            version,
        )])
        .and_then(vec![TxnOp::put(COMPACT_REV_KEY, rev.to_string(), None)])
        .or_else(vec![TxnOp::get(COMPACT_REV_KEY, None)]);
    let resp = endpoints
        .call(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    let now = resp.header().map_or(0, |h| h.revision());
    if !resp.succeeded() {
        // Another replica took this turn: follow its count.
        let seen = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(etcd_client::KeyValue::version),
                _ => None,
            })
            .unwrap_or(0);
        return Ok((seen, now));
    }
    if rev > 0 {
        let compacted = endpoints
            .call(|mut c| async move { c.compact(rev, Some(CompactionOptions::new())).await })
            .await;
        match compacted {
            Ok(_) => tracing::info!(rev, "compacted etcd"),
            // Compacted already (by etcd's own --auto-compaction or someone else): fine.
            Err(e) if super::is_compacted(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((version + 1, now))
}
