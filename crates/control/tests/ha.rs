//! Several control planes on one store (issue 13): replicas on one real etcd serve the API together, the
//! controllers and the scheduler run in the replica holding their Leases and move when it goes, Service IPs
//! stay unique across replicas, one PKI serves them all, and the `kubernetes` Endpoints list the live API
//! servers. The leader election's own rules (a Lease taken by another stops the leader, an unrenewed one
//! is taken over after its duration) run on one plane of either store.

mod common;
// The test etcd of common (one per test process, or HERD_TEST_ETCD).
use common::etcd as etcd_testing;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::Plane;
use herd_control::{ControlConfig, ControlPlane, EtcdConfig, LeaderElection, StoreBackend};
use reqwest::Method;
use serde_json::{Value, json};

const KCM_LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager";
const SCHEDULER_LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler";

/// Short leader election timings, so that a takeover after an expiry happens within seconds.
fn quick_election() -> LeaderElection {
    LeaderElection {
        enabled: true,
        lease_duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(3),
        retry_period: Duration::from_millis(500),
    }
}

/// A configuration on the test etcd under `prefix`.
fn on_etcd(cfg: &mut ControlConfig, prefix: &str) {
    cfg.store = StoreBackend::Etcd(EtcdConfig {
        servers: vec![etcd_testing::endpoint()],
        prefix: prefix.to_string(),
        ..EtcdConfig::default()
    });
    cfg.leader_election = quick_election();
    cfg.controller_resync = Duration::from_secs(2);
}

/// Waits (up to a minute) until `check` gives `Some`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Plane {
    async fn get(&self, path: &str) -> (u16, Value) {
        self.request(Method::GET, path, &[], None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(
            Method::POST,
            path,
            &[],
            Some(("application/json", body.to_string())),
        )
        .await
    }

    /// The holder of a Lease (empty when none).
    async fn holder(&self, lease: &str) -> String {
        let (_, lease) = self.get(lease).await;
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The address of this plane's API server.
    fn addr(&self) -> SocketAddr {
        self.base.trim_start_matches("https://").parse().unwrap()
    }

    /// The identity of the replica listening at `addr`, from its API server Lease.
    async fn identity_of(&self, addr: SocketAddr) -> Option<String> {
        let (_, leases) = self
            .get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?labelSelector=apiserver.kubernetes.io%2Fidentity%3Dkube-apiserver")
            .await;
        leases["items"]
            .as_array()?
            .iter()
            .find(|l| {
                l["metadata"]["annotations"]["herd.dev/advertise-address"] == addr.to_string()
            })
            .and_then(|l| l["spec"]["holderIdentity"].as_str())
            .map(str::to_string)
    }

    /// The `kubernetes` Endpoints' addresses with their ports.
    async fn kubernetes_endpoints(&self) -> BTreeSet<SocketAddr> {
        let (_, ep) = self
            .get("/api/v1/namespaces/default/endpoints/kubernetes")
            .await;
        let mut found = BTreeSet::new();
        for subset in ep["subsets"].as_array().into_iter().flatten() {
            let port = subset["ports"][0]["port"].as_u64().unwrap() as u16;
            for address in subset["addresses"].as_array().into_iter().flatten() {
                let ip = address["ip"].as_str().unwrap().parse().unwrap();
                found.insert(SocketAddr::new(ip, port));
            }
        }
        found
    }

    /// The `LeaderElection` events about a Lease: each message as often as it was recorded (a repeat
    /// bumps its Event's count).
    async fn became_leader(&self, lease: &str) -> Vec<String> {
        let (_, events) = self
            .get(&format!(
                "/api/v1/namespaces/kube-system/events?fieldSelector=involvedObject.name%3D{lease}"
            ))
            .await;
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["reason"] == "LeaderElection")
            .flat_map(|e| {
                let count = e["count"].as_u64().unwrap_or(1) as usize;
                std::iter::repeat_n(e["message"].as_str().unwrap_or_default().to_string(), count)
            })
            .collect()
    }
}

fn deployment(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "example.com/app:1"}]}}}})
}

async fn replica_sets_of(plane: &Plane, name: &str) -> Option<()> {
    let (_, sets) = plane
        .get(&format!(
            "/apis/apps/v1/namespaces/default/replicasets?labelSelector=app%3D{name}"
        ))
        .await;
    sets["items"]
        .as_array()
        .is_some_and(|s| !s.is_empty())
        .then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_planes_on_one_etcd_serve_together_and_a_survivor_takes_over() {
    let prefix = etcd_testing::prefix();
    let first = Plane::start_with(|cfg| on_etcd(cfg, &prefix)).await;
    let (second, third) = tokio::join!(
        Plane::start_with(|cfg| on_etcd(cfg, &prefix)),
        Plane::start_with(|cfg| on_etcd(cfg, &prefix)),
    );
    let planes = [&first, &second, &third];

    // One CA: a client certificate issued by the first replica's CA authenticates on the third, and all
    // three hold the same CA.
    assert_eq!(first.ca_pem(), third.ca_pem());
    assert_eq!(first.ca_pem(), second.ca_pem());
    let jane = first.client_as(Some(("jane", "system:masters")));
    let who = jane
        .post(format!(
            "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            third.base
        ))
        .json(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))
        .send()
        .await
        .unwrap();
    assert_eq!(who.status().as_u16(), 201);
    let who: Value = who.json().await.unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "jane");
    // One ServiceAccount signing key: a token the second replica issues authenticates on the third.
    let token = eventually("a token of the default ServiceAccount", || async {
        let (code, review) = second
            .post(
                "/api/v1/namespaces/default/serviceaccounts/default/token",
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"expirationSeconds": 600}}),
            )
            .await;
        (code == 201).then(|| review["status"]["token"].as_str().unwrap().to_string())
    })
    .await;
    let who: Value = third
        .client_as(None)
        .post(format!(
            "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            third.base
        ))
        .bearer_auth(&token)
        .json(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        who["status"]["userInfo"]["username"], "system:serviceaccount:default:default",
        "{who}"
    );

    // A write on one replica is read on another and watched on the third.
    let (_, list) = third.get("/api/v1/namespaces/default/configmaps").await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut watch = third
        .http
        .get(format!(
            "{}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}",
            third.base
        ))
        .send()
        .await
        .unwrap();
    let (code, _) = first
        .post(
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": "shared"}, "data": {"k": "v"}}),
        )
        .await;
    assert_eq!(code, 201);
    let (code, read) = second
        .get("/api/v1/namespaces/default/configmaps/shared")
        .await;
    assert_eq!((code, &read["data"]["k"]), (200, &json!("v")));
    let mut seen = String::new();
    while !seen.contains("\"shared\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(30), watch.chunk())
            .await
            .expect("the watch on the third replica brings the create")
            .unwrap()
            .unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(seen.contains("\"ADDED\""), "{seen}");

    // Every replica is in the `kubernetes` Endpoints.
    let all: BTreeSet<SocketAddr> = planes.iter().map(|p| p.addr()).collect();
    eventually(
        "the kubernetes Endpoints list the three replicas",
        || async { (first.kubernetes_endpoints().await == all).then_some(()) },
    )
    .await;

    // Each Lease has one holder, one of the three replicas, and it became leader once.
    let mut identities = Vec::new();
    for p in planes {
        identities.push(
            eventually("each replica's API server lease", || {
                p.identity_of(p.addr())
            })
            .await,
        );
    }
    for lease in [KCM_LEASE, SCHEDULER_LEASE] {
        let holder = eventually("the lease is held", || async {
            Some(first.holder(lease).await).filter(|h| !h.is_empty())
        })
        .await;
        assert!(
            identities.contains(&holder),
            "{holder} is none of {identities:?}"
        );
    }
    let became = first.became_leader("kube-controller-manager").await;
    assert_eq!(became.len(), 1, "{became:?}");

    // Concurrent Service creates on the three replicas get distinct IPs, each held by an IPAddress.
    let creates = planes.iter().enumerate().flat_map(|(i, p)| {
        (0..8).map(move |n| async move {
            let (code, svc) = p
                .post(
                    "/api/v1/namespaces/default/services",
                    json!({"metadata": {"name": format!("svc-{i}-{n}")},
                        "spec": {"ports": [{"port": 80}]}}),
                )
                .await;
            assert_eq!(code, 201, "{svc}");
            svc["spec"]["clusterIP"].as_str().unwrap().to_string()
        })
    });
    let ips: Vec<String> = futures::future::join_all(creates).await;
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), ips.len(), "{ips:?}");
    for ip in &ips {
        let (code, address) = second
            .get(&format!("/apis/networking.k8s.io/v1/ipaddresses/{ip}"))
            .await;
        assert_eq!(code, 200, "{address}");
        assert_eq!(address["spec"]["parentRef"]["resource"], "services");
        assert_eq!(
            address["metadata"]["labels"]["ipaddress.kubernetes.io/managed-by"],
            "ipallocator.k8s.io"
        );
    }
    // A deleted Service's IPAddress goes with it.
    let (code, _) = third
        .request(
            Method::DELETE,
            "/api/v1/namespaces/default/services/svc-0-0",
            &[],
            None,
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = first
        .get(&format!(
            "/apis/networking.k8s.io/v1/ipaddresses/{}",
            ips[0]
        ))
        .await;
    assert_eq!(code, 404);

    // A node the scheduler can bind pods to.
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let (code, node) = first
        .post(
            "/api/v1/nodes",
            json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}]}}),
        )
        .await;
    assert_eq!(code, 201, "{node}");

    // The controllers work: a Deployment gets its ReplicaSet.
    first
        .post(
            "/apis/apps/v1/namespaces/default/deployments",
            deployment("before"),
        )
        .await;
    eventually("the Deployment's ReplicaSet", || {
        replica_sets_of(&second, "before")
    })
    .await;

    // Stop the replica leading the controllers: a survivor takes the Lease, the controllers work again
    // there, and the stopped replica leaves the `kubernetes` Endpoints.
    let leader = first.holder(KCM_LEASE).await;
    let index = identities.iter().position(|i| *i == leader).unwrap();
    let [a, b, c] = [first, second, third];
    let mut planes = vec![a, b, c];
    let stopped = planes.remove(index);
    let stopped_addr = stopped.addr();
    stopped.stop().await;
    let survivor = &planes[0];
    let new_leader = eventually(
        "a survivor holds the controller manager's lease",
        || async {
            Some(survivor.holder(KCM_LEASE).await).filter(|h| !h.is_empty() && *h != leader)
        },
    )
    .await;
    assert!(
        identities.contains(&new_leader) && new_leader != leader,
        "{new_leader}"
    );
    let (_, lease) = survivor.get(KCM_LEASE).await;
    assert!(
        lease["spec"]["leaseTransitions"].as_i64().unwrap() >= 1,
        "{lease}"
    );
    planes[1]
        .post(
            "/apis/apps/v1/namespaces/default/deployments",
            deployment("after"),
        )
        .await;
    eventually(
        "the ReplicaSet of a Deployment created after the takeover",
        || replica_sets_of(survivor, "after"),
    )
    .await;
    // The scheduler works in whichever survivor leads it: the new pods are bound to the node.
    eventually(
        "the pods of the Deployment bound by a survivor's scheduler",
        || async {
            let (_, pods) = survivor
                .get("/api/v1/namespaces/default/pods?labelSelector=app%3Dafter")
                .await;
            let pods = pods["items"].as_array().cloned().unwrap_or_default();
            (pods.len() == 2 && pods.iter().all(|p| p["spec"]["nodeName"] == "n1")).then_some(())
        },
    )
    .await;
    let scheduler = survivor.holder(SCHEDULER_LEASE).await;
    assert!(
        identities.contains(&scheduler) && scheduler != leader,
        "{scheduler}"
    );
    eventually(
        "the kubernetes Endpoints drop the stopped replica",
        || async {
            let left = survivor.kubernetes_endpoints().await;
            (left.len() == 2 && !left.contains(&stopped_addr)).then_some(())
        },
    )
    .await;
    for p in planes {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_another_ca_refuses_to_start_naming_both() {
    let prefix = etcd_testing::prefix();
    let first = Plane::start_with(|cfg| on_etcd(cfg, &prefix)).await;
    let dir = tempfile::tempdir().unwrap();
    let own = herd_pki::ClusterCa::load_or_create(dir.path()).unwrap();
    let mut cfg = ControlConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
    cfg.service_cidr = "127.250.0.0/24".parse().unwrap();
    on_etcd(&mut cfg, &prefix);
    let refused = ControlPlane::start(cfg, tokio_util::sync::CancellationToken::new()).await;
    let message = refused
        .err()
        .expect("a replica with its own CA is refused")
        .to_string();
    let cluster_hash = herd_pki::ClusterCa::from_pem(
        first.ca_pem(),
        &std::fs::read_to_string(first.data_dir().join("pki/ca.key")).unwrap(),
    )
    .unwrap()
    .ca_cert_hash();
    assert!(
        message.contains(&own.ca_cert_hash().to_string()),
        "{message}"
    );
    assert!(message.contains(&cluster_hash.to_string()), "{message}");
    assert!(!message.contains('\n'), "{message}");
    first.stop().await;
}

/// A leader whose Lease another holder took stops leading; the Lease left unrenewed by that holder is taken
/// back once its duration has passed as this replica observes it, with a transition counted each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_lease_stops_the_leader_and_an_expired_one_is_taken_over() {
    let plane = Plane::start_with(|cfg| {
        cfg.leader_election = quick_election();
        cfg.controller_resync = Duration::from_secs(2);
    })
    .await;
    let me = eventually("the lease is held", || async {
        Some(plane.holder(KCM_LEASE).await).filter(|h| !h.is_empty())
    })
    .await;
    let (_, mut lease) = plane.get(KCM_LEASE).await;
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 4);
    assert!(lease["spec"]["acquireTime"].is_string() && lease["spec"]["renewTime"].is_string());
    let transitions = lease["spec"]["leaseTransitions"].as_i64().unwrap();
    // A ghost takes the Lease (and never renews it).
    lease["spec"]["holderIdentity"] = json!("ghost");
    lease["spec"]["leaseTransitions"] = json!(transitions + 1);
    let (code, _) = plane
        .request(
            Method::PUT,
            KCM_LEASE,
            &[],
            Some(("application/json", lease.to_string())),
        )
        .await;
    assert_eq!(code, 200);
    let back = eventually("the expired lease taken back", || async {
        let (_, lease) = plane.get(KCM_LEASE).await;
        (lease["spec"]["holderIdentity"] == me.as_str()).then_some(lease)
    })
    .await;
    assert_eq!(back["spec"]["leaseTransitions"], transitions + 2);
    eventually("two LeaderElection events", || async {
        let became = plane.became_leader("kube-controller-manager").await;
        (became.len() == 2 && became.iter().all(|m| *m == format!("{me} became leader")))
            .then_some(())
    })
    .await;
    // The controllers run again.
    plane
        .post(
            "/apis/apps/v1/namespaces/default/deployments",
            deployment("again"),
        )
        .await;
    eventually("the ReplicaSet after the takeover", || {
        replica_sets_of(&plane, "again")
    })
    .await;
    plane.stop().await;
}

/// A stopped leader releases its Leases (client-go's ReleaseOnCancel): with a five-minute lease, the other
/// replica takes both over long before the lease could have expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_releases_its_leases_to_the_other_replica() {
    let prefix = etcd_testing::prefix();
    let long = |cfg: &mut ControlConfig| {
        on_etcd(cfg, &prefix);
        cfg.leader_election.lease_duration = Duration::from_secs(300);
        cfg.leader_election.renew_deadline = Duration::from_secs(200);
    };
    let leading = Plane::start_with(long).await;
    let leader = eventually("the first replica leads", || async {
        Some(leading.holder(KCM_LEASE).await).filter(|h| !h.is_empty())
    })
    .await;
    let other = Plane::start_with(long).await;
    let other_id = eventually("the other replica's identity", || {
        other.identity_of(other.addr())
    })
    .await;
    assert_ne!(leader, other_id);
    leading.stop().await;
    for lease in [KCM_LEASE, SCHEDULER_LEASE] {
        eventually("the other replica takes the released lease", || async {
            (other.holder(lease).await == other_id).then_some(())
        })
        .await;
    }
    other.stop().await;
}

/// With leader election off the controllers run without a Lease (one control plane, as before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_leader_election_off_the_controllers_run_without_a_lease() {
    let off = Plane::start_with(|cfg| cfg.leader_election.enabled = false).await;
    off.post(
        "/apis/apps/v1/namespaces/default/deployments",
        deployment("free"),
    )
    .await;
    eventually("a ReplicaSet without leader election", || {
        replica_sets_of(&off, "free")
    })
    .await;
    let (code, _) = off.get(KCM_LEASE).await;
    assert_eq!(code, 404);
    off.stop().await;
}

/// kube's ipallocator repair, in the leading controller manager: a Service's lost IPAddress is recreated,
/// and an IPAddress whose Service does not exist is deleted (after a second pass still finds it so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repair_loop_recreates_lost_ip_addresses_and_deletes_orphans() {
    let plane = Plane::start_with(|cfg| {
        cfg.leader_election = quick_election();
        cfg.controller_resync = Duration::from_secs(1);
    })
    .await;
    let (code, svc) = plane
        .post(
            "/api/v1/namespaces/default/services",
            json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
        )
        .await;
    assert_eq!(code, 201, "{svc}");
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let address = format!("/apis/networking.k8s.io/v1/ipaddresses/{ip}");
    let (code, _) = plane.request(Method::DELETE, &address, &[], None).await;
    assert_eq!(code, 200);
    let recreated = eventually("the Service's IPAddress recreated", || async {
        let (code, found) = plane.get(&address).await;
        (code == 200).then_some(found)
    })
    .await;
    assert_eq!(recreated["spec"]["parentRef"]["name"], "web");
    assert_eq!(recreated["spec"]["parentRef"]["namespace"], "default");

    let (code, orphan) = plane
        .post(
            "/apis/networking.k8s.io/v1/ipaddresses",
            json!({"metadata": {"name": "127.250.0.200",
                    "labels": {"ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"}},
                "spec": {"parentRef": {"group": "", "resource": "services",
                    "namespace": "default", "name": "gone"}}}),
        )
        .await;
    assert_eq!(code, 201, "{orphan}");
    eventually("the orphaned IPAddress deleted", || async {
        let (code, _) = plane
            .get("/apis/networking.k8s.io/v1/ipaddresses/127.250.0.200")
            .await;
        (code == 404).then_some(())
    })
    .await;
    // A requested IP that an IPAddress holds is refused as kube refuses it.
    let (code, refused) = plane
        .post(
            "/api/v1/namespaces/default/services",
            json!({"metadata": {"name": "twin"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}),
        )
        .await;
    assert_eq!(code, 422, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("provided IP is already allocated"),
        "{refused}"
    );
    plane.stop().await;
}

/// Two first starts on an empty store race to publish their PKI; the loser adopts the winner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_first_starts_end_with_one_ca() {
    let prefix = etcd_testing::prefix();
    let (a, b) = tokio::join!(
        Plane::start_with(|cfg| on_etcd(cfg, &prefix)),
        Plane::start_with(|cfg| on_etcd(cfg, &prefix)),
    );
    assert_eq!(a.ca_pem(), b.ca_pem());
    assert_eq!(
        std::fs::read(a.data_dir().join("pki/sa.key")).unwrap(),
        std::fs::read(b.data_dir().join("pki/sa.key")).unwrap()
    );
    a.stop().await;
    b.stop().await;
}

/// Two replicas on one etcd hand out NodePorts concurrently: every port once, none beyond the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_hand_out_one_node_port_twice() {
    let prefix = etcd_testing::prefix();
    let small_range = |cfg: &mut ControlConfig| {
        on_etcd(cfg, &prefix);
        cfg.service_node_port_range = 30200..=30211;
    };
    let (first, second) = tokio::join!(
        Plane::start_with(small_range),
        Plane::start_with(small_range)
    );
    let service = |name: String| {
        json!({"metadata": {"name": name},
            "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
    };
    let creates = [&first, &second]
        .into_iter()
        .enumerate()
        .flat_map(|(i, p)| {
            (0..6).map(move |n| async move {
                let (code, svc) = p
                    .post(
                        "/api/v1/namespaces/default/services",
                        service(format!("np-{i}-{n}")),
                    )
                    .await;
                assert_eq!(code, 201, "{svc}");
                svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap()
            })
        });
    let ports: Vec<u64> = futures::future::join_all(creates).await;
    let distinct: BTreeSet<&u64> = ports.iter().collect();
    assert_eq!(distinct.len(), 12, "{ports:?}");
    assert!(
        ports.iter().all(|p| (30200..=30211).contains(p)),
        "{ports:?}"
    );
    // The range is full; a deletion frees a port for the next Service.
    let (code, full) = second
        .post(
            "/api/v1/namespaces/default/services",
            service("one-too-many".into()),
        )
        .await;
    assert_eq!(code, 500, "{full}");
    let (code, _) = first
        .request(
            Method::DELETE,
            "/api/v1/namespaces/default/services/np-0-0",
            &[],
            None,
        )
        .await;
    assert_eq!(code, 200);
    let (code, svc) = second
        .post(
            "/api/v1/namespaces/default/services",
            service("one-too-many".into()),
        )
        .await;
    assert_eq!(code, 201, "{svc}");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"].as_u64(), Some(ports[0]));
    first.stop().await;
    second.stop().await;
}
