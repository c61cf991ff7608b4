//! The controllers that let nodes join with a bootstrap token and keep their certificates: `tokencleaner`,
//! `bootstrapsigner`, `csrapproving` and `csrsigning` (kube-controller-manager's), started together
//! because they need the cluster CA and the API server's authorizer besides the caches.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{
    Informers, bootstrap_signer::BootstrapSigner, csr_approving::CsrApproving,
    csr_signing::CsrSigning, run, token_cleaner::TokenCleaner,
};
use crate::objects::Objects;
use crate::server::authz::Authorizer;

/// Starts the four controllers; they stop when `shutdown` is cancelled.
pub(crate) fn spawn(
    objects: &Objects,
    caches: &Arc<Informers>,
    authorizer: Arc<Authorizer>,
    ca: Arc<herd_pki::ClusterCa>,
    signing_duration: Duration,
    resync: Duration,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (o, c) = (objects, caches);
    vec![
        tokio::spawn(run(
            TokenCleaner::new(o.clone(), c.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            BootstrapSigner::new(o.clone(), c.clone()),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            CsrApproving::new(o.clone(), c.clone(), authorizer),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
        tokio::spawn(run(
            CsrSigning::new(o.clone(), c.clone(), ca, signing_duration),
            c.clone(),
            resync,
            shutdown.clone(),
        )),
    ]
}
