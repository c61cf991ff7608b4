//! Pod IPs out of the node's `spec.podCIDR`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Pod;

/// The addresses of a pod CIDR this node hands to its pods: every host address except the
/// first (kept for a gateway, as CNI plugins do), lowest free one first.
#[derive(Debug)]
pub(crate) struct IpPool {
    cidr: IpNet,
    used: BTreeSet<IpAddr>,
    /// Every pod address before this one (counted from the first) is used: the search for the lowest free
    /// address starts here, so handing out 10,000 addresses in a row is not 10,000² lookups.
    free_from: usize,
}

impl IpPool {
    pub fn new(cidr: IpNet) -> Self {
        Self {
            cidr: cidr.trunc(),
            used: BTreeSet::new(),
            free_from: 0,
        }
    }

    /// Takes `preferred` if it is a free pod address of this CIDR (a pod keeps its IP across an
    /// agent restart), else the lowest free one. `None` when the CIDR is full.
    pub fn allocate(&mut self, preferred: Option<IpAddr>) -> Option<IpAddr> {
        if let Some(ip) = preferred.filter(|ip| self.is_pod_address(*ip) && !self.used.contains(ip))
        {
            self.used.insert(ip);
            return Some(ip);
        }
        // `skip` is one `nth` of the address range: arithmetic, not a walk.
        let (index, ip) = self
            .candidates()
            .enumerate()
            .skip(self.free_from)
            .find(|(_, ip)| !self.used.contains(ip))?;
        self.free_from = index + 1;
        self.used.insert(ip);
        Some(ip)
    }

    /// Returns `ip` to the pool.
    pub fn release(&mut self, ip: IpAddr) {
        if self.used.remove(&ip)
            && let Some(index) = self.index_of(ip)
        {
            self.free_from = self.free_from.min(index);
        }
    }

    /// The place of pod address `ip` among the candidates.
    fn index_of(&self, ip: IpAddr) -> Option<usize> {
        let number = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        let first = self.candidates().next()?;
        usize::try_from(number(ip).checked_sub(number(first))?).ok()
    }

    /// The CIDR the addresses come from.
    pub fn cidr(&self) -> IpNet {
        self.cidr
    }

    fn candidates(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.cidr.hosts().skip(1)
    }

    fn is_pod_address(&self, ip: IpAddr) -> bool {
        self.cidr.contains(&ip)
            && self
                .index_of(ip)
                .is_some_and(|index| self.candidates().nth(index) == Some(ip))
    }
}

/// The node's pool, shared by its pod workers.
pub(crate) type SharedIpPool = Arc<Mutex<IpPool>>;

/// A pod's address, back in the pool when dropped (whichever way its worker ends).
#[derive(Debug)]
pub(crate) struct IpLease {
    pool: SharedIpPool,
    pub ip: IpAddr,
}

impl IpLease {
    /// An address for `pod`: the one its status names if free (a pod keeps its IP across an agent
    /// restart), else the lowest free one; `None` when the CIDR is full.
    pub fn for_pod(pool: &SharedIpPool, pod: &Pod) -> Option<Self> {
        let preferred = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        Self::take(pool, preferred)
    }

    /// An address of `pool` (`preferred` if free), or `None` when the CIDR is full.
    pub fn take(pool: &SharedIpPool, preferred: Option<IpAddr>) -> Option<Self> {
        let ip = pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .allocate(preferred)?;
        Some(Self {
            pool: pool.clone(),
            ip,
        })
    }
}

impl Drop for IpLease {
    fn drop(&mut self) {
        self.pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn pool(cidr: &str) -> IpPool {
        IpPool::new(cidr.parse().expect("cidr"))
    }

    #[test]
    fn lowest_free_skipping_network_and_first_host() {
        let mut pool = pool("127.1.0.0/24");
        assert_eq!(pool.allocate(None), Some(ip("127.1.0.2")));
        assert_eq!(pool.allocate(None), Some(ip("127.1.0.3")));
        pool.release(ip("127.1.0.2"));
        assert_eq!(pool.allocate(None), Some(ip("127.1.0.2")));
        assert_eq!(pool.allocate(None), Some(ip("127.1.0.4")));
    }

    #[test]
    fn preferred_address_when_free_and_valid() {
        let mut pool = pool("127.1.0.0/24");
        assert_eq!(pool.allocate(Some(ip("127.1.0.9"))), Some(ip("127.1.0.9")));
        assert_eq!(
            pool.allocate(Some(ip("127.1.0.9"))),
            Some(ip("127.1.0.2")),
            "taken"
        );
        assert_eq!(
            pool.allocate(Some(ip("127.2.0.9"))),
            Some(ip("127.1.0.3")),
            "outside the CIDR"
        );
        assert_eq!(
            pool.allocate(Some(ip("127.1.0.1"))),
            Some(ip("127.1.0.4")),
            "the reserved first host"
        );
        assert_eq!(
            pool.allocate(Some(ip("127.1.0.255"))),
            Some(ip("127.1.0.5")),
            "broadcast"
        );
    }

    #[test]
    fn a_lease_returns_its_address_when_dropped() {
        let shared: SharedIpPool = Arc::new(Mutex::new(pool("127.1.0.0/30")));
        let first = IpLease::take(&shared, None).expect("the one pod address");
        assert_eq!(first.ip, ip("127.1.0.2"));
        assert!(IpLease::take(&shared, None).is_none(), "full");
        drop(first);
        let again = IpLease::take(&shared, None).expect("free again");
        assert_eq!(again.ip, ip("127.1.0.2"));
    }

    #[test]
    fn thousands_in_a_row_then_the_lowest_released() {
        let mut pool = pool("127.64.0.0/16");
        let all: Vec<IpAddr> = (0..20_000)
            .map(|_| pool.allocate(None).expect("free"))
            .collect();
        assert_eq!(all[0], ip("127.64.0.2"));
        assert_eq!(all[19_999], ip("127.64.78.33"));
        pool.release(ip("127.64.40.0"));
        pool.release(ip("127.64.3.7"));
        assert_eq!(pool.allocate(None), Some(ip("127.64.3.7")));
        assert_eq!(pool.allocate(None), Some(ip("127.64.40.0")));
        assert_eq!(pool.allocate(None), Some(ip("127.64.78.34")));
        assert_eq!(
            pool.allocate(Some(ip("127.64.200.1"))),
            Some(ip("127.64.200.1"))
        );
    }

    #[test]
    fn full_pool() {
        let mut pool = pool("127.1.0.0/29");
        let all: Vec<IpAddr> = std::iter::from_fn(|| pool.allocate(None)).collect();
        assert_eq!(
            all,
            [
                "127.1.0.2",
                "127.1.0.3",
                "127.1.0.4",
                "127.1.0.5",
                "127.1.0.6"
            ]
            .map(ip)
        );
        pool.release(ip("127.1.0.4"));
        assert_eq!(pool.allocate(None), Some(ip("127.1.0.4")));
        assert_eq!(pool.allocate(None), None);
    }
}
