//! Loopback address ranges for one herd instance.
//!
//! Pods and Services bind real addresses in `127.0.0.0/8`, and tests run in parallel (possibly two test
//! binaries at once on one machine), so every herd instance gets its own ranges. The scheme: a *slot* is a
//! `/20` of `127.128.0.0 – 127.251.255.255` (clear of herd's defaults 127.10/16 and 127.64/10, so a
//! developer's own `herd up` does not collide); slot = `(pid % 31) * 64 + k` where `k` counts instances
//! within this process (at most 64). In a slot `127.A.B.0/20` the cluster CIDR is `127.A.B.0/22` (four node
//! pod CIDRs of /24) and the service CIDR is `127.A.(B+8).0/24`. Within one run no two instances share a
//! slot; two concurrent runs collide only when their pids agree modulo 31, and even then a slot a live
//! herd claims on the host is skipped.

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

/// An IPv4 network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `A.B.C.D/N`.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        Some(Cidr {
            network: addr.parse().ok()?,
            prefix,
        })
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// Whether `ip` (text) is an IPv4 address inside this network.
    pub fn contains(&self, ip: &str) -> bool {
        match ip.parse::<Ipv4Addr>() {
            Ok(ip) => u32::from(ip) & self.mask() == u32::from(self.network) & self.mask(),
            Err(_) => false,
        }
    }

    /// Whether `other` lies entirely inside this network.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(&other.network.to_string())
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The cluster (pod) and service CIDRs of one herd instance.
#[derive(Debug, Clone, Copy)]
pub struct Cidrs {
    pub cluster: Cidr,
    pub service: Cidr,
}

/// Ranges that no other herd instance of this test run uses, nor any live herd cluster on this host
/// (herd refuses to start on ranges another cluster claims; see `claimed`).
pub fn unique_cidrs() -> Cidrs {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(
            k < 128,
            "more than 128 herd instances in one test run: widen the CIDR scheme in cidr.rs"
        );
        let slot = (std::process::id() % 15) * 128 + k; // < 1920 <= 124 * 16
        let a = (128 + slot / 16) as u8;
        let b = ((slot % 16) * 16) as u8;
        let cidrs = Cidrs {
            cluster: Cidr {
                network: Ipv4Addr::new(127, a, b, 0),
                prefix: 22,
            },
            service: Cidr {
                network: Ipv4Addr::new(127, a, b + 8, 0),
                prefix: 24,
            },
        };
        let slot_range = Cidr {
            network: cidrs.cluster.network,
            prefix: 20,
        };
        if !claimed()
            .iter()
            .any(|c| c.covers(&slot_range) || slot_range.covers(c))
        {
            return cidrs;
        }
    }
}

/// The IPv4 ranges live herd clusters on this host claim: their control planes announce them as abstract
/// Unix sockets `@herd-ranges:service=…,cluster=…,pid=…`, listed in `/proc/net/unix`.
fn claimed() -> Vec<Cidr> {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    table
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .nth(7)?
                .strip_prefix("@herd-ranges:")
        })
        .flat_map(|fields| fields.split(','))
        .filter_map(|field| field.split_once('='))
        .filter(|(key, _)| *key == "service" || *key == "cluster")
        .filter_map(|(_, range)| Cidr::parse(range))
        .collect()
}
