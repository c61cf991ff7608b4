//! One machine, several clusters: a control plane claims its Service and pod ranges host-wide, so a second
//! cluster whose ranges overlap refuses to start instead of silently sharing addresses with the first.
//!
//! The claim is an abstract Unix socket (`@herd-ranges:service=…,cluster=…,pid=…`) held for the life of
//! the process. Abstract sockets suit this exactly: they are listed in `/proc/net/unix` for every user,
//! need no file anyone could leave behind (the kernel frees the name when the process dies, however it
//! dies, so a dead cluster never blocks a new one), and belong to the network namespace, which is also
//! the scope in which loopback addresses can clash. Checking and claiming happen under a host-wide lock
//! (another abstract name, `@herd-ranges.lock`, which only one socket can hold), so two clusters starting
//! at the same moment cannot both miss each other.
//!
//! Control plane replicas of ONE cluster (`--store etcd`) share its ranges: each claims them with the
//! cluster's store identity (`store=<hash of the etcd servers and prefix>`), and a claim of the same ranges
//! with the same store identity is no clash.

use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use ipnet::{IpNet, Ipv4Net};

const CLAIM_PREFIX: &str = "herd-ranges:";
const LOCK_NAME: &str = "herd-ranges.lock";
/// How long to wait for another herd that is claiming its ranges at this moment.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The ranges one cluster's addresses come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranges {
    pub service: IpNet,
    pub cluster: Ipv4Net,
}

/// The claim of a live cluster, as announced by its control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Claim {
    ranges: Ranges,
    pid: u32,
    /// The identity of the shared store of a replicated control plane ([`store_identity`]); 0: none.
    store: u64,
}

/// The identity of a shared store (FNV-1a of its servers, sorted, and key prefix): replicas of one cluster
/// have the same; `None` (a store of the process's own) has none.
pub fn store_identity(servers: &[String], prefix: &str) -> u64 {
    let mut servers = servers.to_vec();
    servers.sort();
    let text = format!("{}|{prefix}", servers.join(","));
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash.max(1)
}

/// Held while the control plane runs; the claim ends when this is dropped or the process exits.
#[derive(Debug)]
pub struct RangeClaim {
    _socket: UnixDatagram,
}

/// Claims `ranges` for this process, or fails with a one-line message naming the flag to change if
/// another live herd cluster on this host uses an overlapping range. `store`: the identity of the store
/// this control plane shares with its replicas ([`store_identity`]), whose claims of the same ranges are
/// no clash; 0 for a store of its own.
pub fn claim(ranges: Ranges, store: u64) -> anyhow::Result<RangeClaim> {
    let _lock = lock()?;
    let table = std::fs::read_to_string("/proc/net/unix").context("reading /proc/net/unix")?;
    let others: Vec<Claim> = claims_in(&table)
        .into_iter()
        .filter(|other| !(store != 0 && other.store == store && other.ranges == ranges))
        .collect();
    if let Some(message) = conflict(ranges, &others) {
        bail!("{message}");
    }
    let name = claim_name(Claim {
        ranges,
        pid: std::process::id(),
        store,
    });
    let socket = bind_abstract(&name)
        .with_context(|| format!("announcing this cluster's ranges as @{name}"))?;
    Ok(RangeClaim { _socket: socket })
}

/// The host-wide lock, held while this process checks and claims.
fn lock() -> anyhow::Result<UnixDatagram> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match bind_abstract(LOCK_NAME) {
            Ok(socket) => return Ok(socket),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => bail!(
                "another herd has been claiming its address ranges (@{LOCK_NAME}) for {LOCK_WAIT:?}; \
                 is one stuck starting?"
            ),
            Err(e) => return Err(e).context(format!("binding the abstract socket @{LOCK_NAME}")),
        }
    }
}

fn bind_abstract(name: &str) -> io::Result<UnixDatagram> {
    UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes())?)
}

fn claim_name(claim: Claim) -> String {
    let mut name = format!(
        "{CLAIM_PREFIX}service={},cluster={},pid={}",
        claim.ranges.service, claim.ranges.cluster, claim.pid
    );
    if claim.store != 0 {
        name.push_str(&format!(",store={:016x}", claim.store));
    }
    name
}

/// The claims listed in a `/proc/net/unix` table (abstract names are shown with a leading `@`).
fn claims_in(table: &str) -> Vec<Claim> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(7))
        .filter_map(|path| path.strip_prefix('@')?.strip_prefix(CLAIM_PREFIX))
        .filter_map(parse_claim)
        .collect()
}

fn parse_claim(fields: &str) -> Option<Claim> {
    let (mut service, mut cluster, mut pid, mut store) = (None, None, None, 0);
    for field in fields.split(',') {
        match field.split_once('=')? {
            ("service", v) => service = v.parse().ok(),
            ("cluster", v) => cluster = v.parse().ok(),
            ("pid", v) => pid = v.parse().ok(),
            ("store", v) => store = u64::from_str_radix(v, 16).unwrap_or(0),
            _ => {}
        }
    }
    Some(Claim {
        ranges: Ranges {
            service: service?,
            cluster: cluster?,
        },
        pid: pid?,
        store,
    })
}

fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The message for `mine` if one of its ranges overlaps a range of another cluster: which ranges clash
/// with what, the flags to change, and free ranges for them.
fn conflict(mine: Ranges, others: &[Claim]) -> Option<String> {
    let ours = [
        ("Service", "--service-cidr", mine.service),
        ("pod", "--cluster-cidr", IpNet::V4(mine.cluster)),
    ];
    // (our kind, flag, our range, their kind, their range, their pid) for each of our ranges that clashes.
    let clashes: Vec<_> = ours
        .iter()
        .filter_map(|&(what, flag, range)| {
            others.iter().find_map(|other| {
                [
                    ("Service", other.ranges.service),
                    ("pod", IpNet::V4(other.ranges.cluster)),
                ]
                .into_iter()
                .find(|(_, theirs)| overlaps(range, *theirs))
                .map(|(their_what, theirs)| (what, flag, range, their_what, theirs, other.pid))
            })
        })
        .collect();
    let (first, rest) = clashes.split_first()?;
    let (what, _, range, their_what, theirs, pid) = *first;
    let mut message = format!(
        "the {what} range {range} overlaps the {their_what} range {theirs} of another herd cluster on this \
         host (pid {pid})"
    );
    for &(what, _, range, their_what, theirs, other_pid) in rest {
        if other_pid == pid {
            message.push_str(&format!(
                ", and the {what} range {range} overlaps its {their_what} range {theirs}"
            ));
        } else {
            message.push_str(&format!(
                ", and the {what} range {range} overlaps the {their_what} range {theirs} of the one with pid \
                 {other_pid}"
            ));
        }
    }
    // Free ranges of the same sizes, clear of every claimed range, of our ranges that stay, and of each other.
    let mut avoid: Vec<IpNet> = others
        .iter()
        .flat_map(|c| [c.ranges.service, IpNet::V4(c.ranges.cluster)])
        .collect();
    avoid.extend(
        ours.iter()
            .filter(|(_, flag, _)| !clashes.iter().any(|c| c.1 == *flag))
            .map(|(_, _, range)| *range),
    );
    let mut examples = Vec::new();
    for &(_, flag, range, ..) in &clashes {
        if let Some(free) = free_range_like(range, &avoid) {
            avoid.push(free);
            examples.push(format!("{flag} {free}"));
        }
    }
    let flags: Vec<&str> = clashes.iter().map(|c| c.1).collect();
    let example = if examples.is_empty() {
        String::new()
    } else {
        format!(" (e.g. {})", examples.join(" "))
    };
    if flags.len() == 1 {
        message.push_str(&format!("; choose another with {}{example}", flags[0]));
    } else {
        message.push_str(&format!(
            "; choose others with {}{example}",
            flags.join(" and ")
        ));
    }
    Some(message)
}

/// The first range of `range`'s size after it (wrapping within its /8 for IPv4 loopback-style ranges)
/// that overlaps none of `avoid`.
fn free_range_like(range: IpNet, avoid: &[IpNet]) -> Option<IpNet> {
    let IpNet::V4(net) = range else {
        return None;
    };
    let size = 1u64 << (32 - u32::from(net.prefix_len()));
    let within = Ipv4Net::new(net.network(), net.prefix_len().min(8))
        .ok()?
        .trunc();
    let first = u64::from(u32::from(within.network()));
    let count = (1u64 << (32 - u32::from(within.prefix_len()))) / size;
    let start = (u64::from(u32::from(net.network())) - first) / size;
    (1..count)
        .map(|i| first + ((start + i) % count) * size)
        .filter_map(|addr| {
            let addr = u32::try_from(addr).ok()?;
            Ipv4Net::new(addr.into(), net.prefix_len()).ok()
        })
        .map(IpNet::V4)
        .find(|candidate| !avoid.iter().any(|a| overlaps(*candidate, *a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(service: &str, cluster: &str) -> Ranges {
        Ranges {
            service: service.parse().unwrap(),
            cluster: cluster.parse().unwrap(),
        }
    }

    #[test]
    fn claims_are_read_from_proc_net_unix() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00000000 0002 01 17023 @herd-ranges:service=127.10.0.0/16,cluster=127.64.0.0/10,pid=4242\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 16000 /run/systemd/notify\n\
            0000000000000000: 00000002 00000000 00000000 0002 01 17024 @herd-ranges.lock\n\
            0000000000000000: 00000002 00000000 00000000 0002 01 17025 @herd-ranges:service=garbage\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 17026\n";
        assert_eq!(
            claims_in(table),
            vec![Claim {
                ranges: ranges("127.10.0.0/16", "127.64.0.0/10"),
                pid: 4242,
                store: 0,
            }]
        );
        let claim = Claim {
            ranges: ranges("fd00::/112", "127.64.0.0/10"),
            pid: 7,
            store: store_identity(&["https://10.0.0.1:2379".into()], "/registry"),
        };
        let name = claim_name(claim);
        assert_eq!(
            parse_claim(name.strip_prefix(CLAIM_PREFIX).unwrap()),
            Some(claim)
        );
    }

    #[test]
    fn an_overlap_names_the_flag_and_a_free_range() {
        let other = Claim {
            ranges: ranges("127.10.0.0/16", "127.64.0.0/10"),
            pid: 4242,
            store: 0,
        };
        let message = conflict(ranges("127.10.0.0/16", "127.128.0.0/16"), &[other]).unwrap();
        assert_eq!(
            message,
            "the Service range 127.10.0.0/16 overlaps the Service range 127.10.0.0/16 of another herd \
             cluster on this host (pid 4242); choose another with --service-cidr (e.g. --service-cidr \
             127.11.0.0/16)"
        );
        // A pod range inside the other's pod range; a suggestion skips every range in use.
        let message = conflict(ranges("127.11.0.0/16", "127.70.0.0/16"), &[other]).unwrap();
        assert!(
            message.starts_with(
                "the pod range 127.70.0.0/16 overlaps the pod range 127.64.0.0/10 of another herd"
            ),
            "{message}"
        );
        assert!(
            message.ends_with("with --cluster-cidr (e.g. --cluster-cidr 127.128.0.0/16)"),
            "{message}"
        );
        // A Service range inside another cluster's pod range is a clash too.
        let message = conflict(ranges("127.65.0.0/24", "127.200.0.0/16"), &[other]).unwrap();
        assert!(
            message.contains("Service range 127.65.0.0/24 overlaps the pod range 127.64.0.0/10"),
            "{message}"
        );
        // Both ranges in use (two `herd up`s with the defaults): both flags, with free ranges for each.
        assert_eq!(
            conflict(ranges("127.10.0.0/16", "127.64.0.0/10"), &[other]).unwrap(),
            "the Service range 127.10.0.0/16 overlaps the Service range 127.10.0.0/16 of another herd \
             cluster on this host (pid 4242), and the pod range 127.64.0.0/10 overlaps its pod range \
             127.64.0.0/10; choose others with --service-cidr and --cluster-cidr (e.g. --service-cidr \
             127.11.0.0/16 --cluster-cidr 127.128.0.0/10)"
        );
        assert_eq!(
            conflict(ranges("127.11.0.0/16", "127.128.0.0/10"), &[other]),
            None
        );
        assert_eq!(
            conflict(ranges("127.10.0.0/16", "127.64.0.0/10"), &[]),
            None
        );
    }

    #[test]
    fn a_claim_is_seen_by_the_next_and_ends_with_its_holder() {
        // Ranges no real cluster uses: 127.3.x and 127.4.x are clear of herd's defaults and the e2e tests'
        // ranges; the pid keeps two test runs at once apart.
        let third = std::process::id() % 250;
        let mine = ranges(
            &format!("127.3.{third}.0/24"),
            &format!("127.4.{third}.0/24"),
        );
        let held = claim(mine, 0).expect("first claim");
        let error = claim(mine, 0)
            .expect_err("second claim of the same ranges")
            .to_string();
        assert!(error.contains("--service-cidr"), "{error}");
        assert!(
            error.contains(&format!("(pid {})", std::process::id())),
            "{error}"
        );
        drop(held);
        drop(claim(mine, 0).expect("the ranges are free again once the claim is dropped"));
    }

    #[test]
    fn replicas_of_one_cluster_share_its_ranges_and_no_one_else_does() {
        let third = (std::process::id() + 100) % 250;
        let mine = ranges(
            &format!("127.3.{third}.0/24"),
            &format!("127.4.{third}.0/24"),
        );
        let cluster = store_identity(
            &["https://b:2379".into(), "https://a:2379".into()],
            "/registry",
        );
        assert_eq!(
            cluster,
            store_identity(
                &["https://a:2379".into(), "https://b:2379".into()],
                "/registry"
            )
        );
        // Another replica's claim (another process: its pid is in the name).
        let replica = bind_abstract(&claim_name(Claim {
            ranges: mine,
            pid: 1,
            store: cluster,
        }))
        .expect("the other replica's claim");
        let mine_too = claim(mine, cluster).expect("a second replica of the same cluster");
        let other = store_identity(&["https://a:2379".into()], "/other");
        assert!(claim(mine, other).is_err(), "another cluster's claim");
        assert!(claim(mine, 0).is_err(), "a cluster of its own");
        drop((replica, mine_too));
    }
}
