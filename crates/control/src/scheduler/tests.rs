//! Filters, scores, the message format and whole passes, over in-memory nodes and pods; then one pass
//! against a real store.

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use super::decide::{Decision, decide};
use super::filters::Candidate;
use super::snapshot::{Resources, Snapshot, pod_requests};

fn node(name: &str, cpu: &str, mem: &str, extra: Value) -> Node {
    let mut n = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]}});
    merge(&mut n, extra);
    serde_json::from_value(n).unwrap()
}

fn pod(name: &str, cpu: &str, mem: &str, extra: Value) -> Pod {
    let mut p = json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}});
    merge(&mut p, extra);
    serde_json::from_value(p).unwrap()
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

fn on(node: &str) -> Value {
    json!({"spec": {"nodeName": node}})
}

/// The refusal reasons of each node, for `p`.
fn refusals(nodes: &[Node], placed: &[Pod], p: &Pod) -> Vec<Option<Vec<String>>> {
    let snap = Snapshot::new(nodes, placed);
    let c = Candidate::new(&snap, p);
    snap.nodes
        .iter()
        .map(|n| c.refuse(n).map(|r| r.reasons))
        .collect()
}

fn one(reason: &str) -> Option<Vec<String>> {
    Some(vec![reason.to_string()])
}

fn chosen(nodes: &[Node], placed: &[Pod], p: &Pod) -> String {
    let snap = Snapshot::new(nodes, placed);
    match decide(&snap, p, &mut 0) {
        Decision::Bind(i) => snap.nodes[i].name.to_string(),
        Decision::Unschedulable(m) => m,
        other => panic!("{other:?}"),
    }
}

#[test]
fn requests_fall_back_to_limits_take_the_largest_init_container_and_count_one_pod() {
    let p: Pod = serde_json::from_value(json!({"spec": {
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}]}}))
    .unwrap();
    let (req, nonzero) = pod_requests(&p);
    let want = Resources {
        cpu: 2000,
        memory: (64 << 20) + (1 << 30),
        pods: 1,
    };
    assert_eq!(req, want);
    assert_eq!(nonzero.cpu, 1250, "scoring ignores init containers");
}

#[test]
fn unschedulable_nodes_are_refused_unless_tolerated() {
    let nodes = [node(
        "a",
        "1",
        "1Gi",
        json!({"spec": {"unschedulable": true}}),
    )];
    let p = pod("p", "100m", "1Mi", json!({}));
    assert_eq!(
        refusals(&nodes, &[], &p),
        [one("node(s) were unschedulable")]
    );
    let tolerant = pod(
        "p",
        "100m",
        "1Mi",
        json!({"spec": {"tolerations": [
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
    );
    assert_eq!(refusals(&nodes, &[], &tolerant), [None]);
}

#[test]
fn taints_need_matching_tolerations_for_noschedule_and_noexecute() {
    let taint = |key: &str, value: &str, effect: &str| {
        node(
            "n",
            "1",
            "1Gi",
            json!({"spec": {"taints": [{"key": key, "value": value, "effect": effect}]}}),
        )
    };
    let tol = |t: Value| pod("p", "100m", "1Mi", json!({"spec": {"tolerations": [t]}}));
    let plain = pod("p", "100m", "1Mi", json!({}));
    let nodes = [taint("dedicated", "gpu", "NoSchedule")];
    assert_eq!(
        refusals(&nodes, &[], &plain),
        [one("node(s) had untolerated taint {dedicated: gpu}")]
    );
    for ok in [
        json!({"key": "dedicated", "operator": "Equal", "value": "gpu"}),
        json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}),
        json!({"key": "dedicated", "operator": "Exists"}),
        json!({"operator": "Exists"}),
    ] {
        assert_eq!(refusals(&nodes, &[], &tol(ok.clone())), [None], "{ok}");
    }
    for bad in [
        json!({"key": "dedicated", "operator": "Equal", "value": "cpu"}),
        json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "other", "operator": "Exists"}),
    ] {
        assert!(
            refusals(&nodes, &[], &tol(bad.clone()))[0].is_some(),
            "{bad}"
        );
    }
    let execute = [taint("k", "", "NoExecute")];
    assert_eq!(
        refusals(&execute, &[], &plain),
        [one("node(s) had untolerated taint {k: }")]
    );
    let prefer = [taint("k", "", "PreferNoSchedule")];
    assert_eq!(
        refusals(&prefer, &[], &plain),
        [None],
        "PreferNoSchedule does not filter"
    );
}

#[test]
fn nodes_that_are_not_ready_carry_the_lifecycle_taints() {
    let not_ready = node(
        "a",
        "1",
        "1Gi",
        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
    );
    let unknown = node(
        "b",
        "1",
        "1Gi",
        json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
    );
    let p = pod("p", "100m", "1Mi", json!({}));
    assert_eq!(
        refusals(&[not_ready.clone(), unknown], &[], &p),
        [
            one("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
            one("node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
        ]
    );
    let daemon = pod(
        "p",
        "100m",
        "1Mi",
        json!({"spec": {"tolerations": [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]}}),
    );
    assert_eq!(refusals(&[not_ready], &[], &daemon), [None]);
}

#[test]
fn resources_count_non_terminal_pods_already_bound() {
    let nodes = [node(
        "a",
        "1",
        "1Gi",
        json!({"status": {"allocatable": {"pods": "2"}}}),
    )];
    let placed = [
        pod("x", "600m", "800Mi", on("a")),
        pod(
            "done",
            "1",
            "1Gi",
            json!({"spec": {"nodeName": "a"}, "status": {"phase": "Succeeded"}}),
        ),
    ];
    assert_eq!(
        refusals(&nodes, &placed, &pod("p", "300m", "100Mi", json!({}))),
        [None]
    );
    assert_eq!(
        refusals(&nodes, &placed, &pod("p", "500m", "300Mi", json!({}))),
        [Some(vec![
            "Insufficient cpu".into(),
            "Insufficient memory".into()
        ])]
    );
    let full = [pod("x", "0", "0", on("a")), pod("y", "0", "0", on("a"))];
    assert_eq!(
        refusals(&nodes, &full, &pod("p", "0", "0", json!({}))),
        [one("Too many pods")]
    );
}

#[test]
fn node_selector_and_required_affinity_both_apply() {
    let nodes = [
        node(
            "a",
            "1",
            "1Gi",
            json!({"metadata": {"labels": {"disk": "ssd"}}}),
        ),
        node(
            "b",
            "1",
            "1Gi",
            json!({"metadata": {"labels": {"disk": "hdd"}}}),
        ),
    ];
    let msg = "node(s) didn't match Pod's node affinity/selector";
    let by_selector = pod(
        "p",
        "1m",
        "1Mi",
        json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
    );
    assert_eq!(refusals(&nodes, &[], &by_selector), [None, one(msg)]);
    let by_affinity = pod(
        "p",
        "1m",
        "1Mi",
        json!({"spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}]}}}}}),
    );
    assert_eq!(refusals(&nodes, &[], &by_affinity), [one(msg), None]);
    let by_field = pod(
        "p",
        "1m",
        "1Mi",
        json!({"spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}}}),
    );
    assert_eq!(refusals(&nodes, &[], &by_field), [one(msg), None]);
}

fn anti_affinity(namespaces: Value) -> Value {
    json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname",
         "namespaces": namespaces}]}}}})
}

#[test]
fn required_anti_affinity_refuses_hosts_with_matching_pods_in_the_namespaces() {
    let nodes = [
        node("a", "1", "1Gi", json!({})),
        node("b", "1", "1Gi", json!({})),
    ];
    let mut other_ns = pod("o", "1m", "1Mi", on("b"));
    other_ns.metadata.namespace = Some("other".into());
    let placed = [pod("x", "1m", "1Mi", on("a")), other_ns];
    let msg = "node(s) didn't match pod anti-affinity rules";
    let p = pod("p", "1m", "1Mi", anti_affinity(json!([])));
    assert_eq!(refusals(&nodes, &placed, &p), [one(msg), None]);
    let p = pod("p", "1m", "1Mi", anti_affinity(json!(["default", "other"])));
    assert_eq!(refusals(&nodes, &placed, &p), [one(msg), one(msg)]);
}

fn spread(when: &str, skew: i32) -> Value {
    json!({"spec": {"topologySpreadConstraints": [{"maxSkew": skew, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}}]}})
}

#[test]
fn do_not_schedule_spread_filters_by_max_skew() {
    let nodes = [
        node("a", "4", "4Gi", json!({})),
        node("b", "4", "4Gi", json!({})),
    ];
    let placed = [
        pod("x", "1m", "1Mi", on("a")),
        pod("y", "1m", "1Mi", on("a")),
    ];
    let msg = "node(s) didn't match pod topology spread constraints";
    assert_eq!(
        refusals(
            &nodes,
            &placed,
            &pod("p", "1m", "1Mi", spread("DoNotSchedule", 1))
        ),
        [one(msg), None]
    );
    assert_eq!(
        refusals(
            &nodes,
            &placed,
            &pod("p", "1m", "1Mi", spread("DoNotSchedule", 3))
        ),
        [None, None]
    );
}

#[test]
fn least_allocated_prefers_the_emptier_node_and_ties_go_to_the_first_name() {
    let nodes = [
        node("b", "2", "2Gi", json!({})),
        node("a", "2", "2Gi", json!({})),
    ];
    let p = pod("p", "100m", "100Mi", json!({}));
    assert_eq!(chosen(&nodes, &[], &p), "a", "equal scores: first by name");
    let busy = [pod("x", "1", "1Gi", {
        let mut v = on("a");
        v["metadata"] = json!({"labels": {"app": "other"}});
        v
    })];
    assert_eq!(chosen(&nodes, &busy, &p), "b");
}

#[test]
fn preferred_node_affinity_outweighs_a_small_allocation_difference() {
    let nodes = [
        node("a", "4", "4Gi", json!({})),
        node(
            "b",
            "4",
            "4Gi",
            json!({"metadata": {"labels": {"zone": "z1"}}}),
        ),
    ];
    let placed = [pod("x", "200m", "200Mi", on("b"))];
    let p = pod(
        "p",
        "1m",
        "1Mi",
        json!({"metadata": {"labels": {"app": "p"}}, "spec": {"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}}]}}}}),
    );
    assert_eq!(chosen(&nodes, &placed, &p), "b");
    assert_eq!(
        chosen(&nodes, &placed, &pod("q", "1m", "1Mi", json!({}))),
        "a"
    );
}

#[test]
fn replicas_of_one_owner_and_schedule_anyway_spread_prefer_other_nodes() {
    // Node a is emptier, but already runs a replica of the same owner / a pod matching the constraint.
    let nodes = [
        node("a", "64", "64Gi", json!({})),
        node("b", "4", "4Gi", json!({})),
    ];
    let owner = json!({"metadata": {"ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true}]}});
    let placed = [pod("x", "1m", "1Mi", merged(on("a"), owner.clone()))];
    assert_eq!(chosen(&nodes, &placed, &pod("p", "1m", "1Mi", owner)), "b");
    let placed = [pod("x", "1m", "1Mi", on("a"))];
    assert_eq!(
        chosen(
            &nodes,
            &placed,
            &pod("p", "1m", "1Mi", spread("ScheduleAnyway", 1))
        ),
        "b"
    );
    assert_eq!(
        chosen(&nodes, &placed, &pod("q", "1m", "1Mi", json!({}))),
        "a"
    );
}

fn merged(mut a: Value, b: Value) -> Value {
    merge(&mut a, b);
    a
}

#[test]
fn the_message_counts_reasons_sorted_as_strings_like_kube() {
    let nodes = [
        node("a", "1", "1Gi", json!({})),
        node("b", "1", "1Gi", json!({})),
        node(
            "cp",
            "1",
            "1Gi",
            json!({"spec": {"taints": [
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
        ),
    ];
    assert_eq!(
        chosen(&nodes, &[], &pod("p", "100m", "2Gi", json!({}))),
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
         2 Insufficient memory. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling., \
         2 No preemption victims found for incoming pod.."
    );
    assert_eq!(
        chosen(&[], &[], &pod("p", "1m", "1Mi", json!({}))),
        "no nodes available to schedule pods"
    );
}

#[test]
fn a_pass_packs_pods_as_it_binds_them() {
    let nodes = [
        node("a", "1", "1Gi", json!({})),
        node("b", "1", "1Gi", json!({})),
    ];
    let pending: Vec<Pod> = (0..5)
        .map(|i| pod(&format!("p{i}"), "400m", "10Mi", json!({})))
        .collect();
    let mut snap = Snapshot::new(&nodes, &[]);
    let mut got = Vec::new();
    for p in &pending {
        match decide(&snap, p, &mut 0) {
            Decision::Bind(i) => {
                got.push(snap.nodes[i].name.to_string());
                snap.assume(p, i);
            }
            Decision::Unschedulable(m) => got.push(m),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got[..4], ["a", "b", "a", "b"]);
    assert!(
        got[4].starts_with("0/2 nodes are available: 2 Insufficient cpu."),
        "{}",
        got[4]
    );
}

#[test]
fn the_number_of_nodes_searched_follows_kube_schedulers_adaptive_percentage() {
    use super::decide::feasible_nodes_to_find;
    // Below 100 nodes every node; 1,000 nodes → 42%; 5,000 → 10%; never under 5% nor under 100 nodes.
    assert_eq!(
        [50, 99, 100, 150, 1000, 5000, 100_000].map(feasible_nodes_to_find),
        [50, 99, 100, 100, 420, 500, 5000]
    );
}

#[test]
fn large_clusters_stop_searching_after_enough_feasible_nodes_and_rotate_the_start() {
    let nodes: Vec<Node> = (0..200)
        .map(|i| node(&format!("n{i:03}"), "8", "32Gi", json!({})))
        .collect();
    let snap = Snapshot::new(&nodes, &[]);
    let p = pod("p", "100m", "10Mi", json!({}));
    // 200 nodes → 100 feasible are enough: the first search looks at n000..n099 only.
    let mut next = 0;
    let Decision::Bind(first) = decide(&snap, &p, &mut next) else {
        panic!("fits");
    };
    assert_eq!((first, next), (0, 100));
    // The next pod's search starts where this one stopped.
    let Decision::Bind(second) = decide(&snap, &p, &mut next) else {
        panic!("fits");
    };
    assert_eq!((second, next), (100, 0));
    // Infeasible nodes do not count towards "enough": the search goes on, wrapping around.
    let busy: Vec<Pod> = (0..150)
        .map(|i| {
            let mut q = pod(&format!("q{i}"), "8", "1Mi", json!({}));
            q.spec.as_mut().unwrap().node_name = Some(format!("n{i:03}"));
            q
        })
        .collect();
    let snap = Snapshot::new(&nodes, &busy);
    let mut next = 120;
    let Decision::Bind(third) = decide(&snap, &p, &mut next) else {
        panic!("fits");
    };
    assert_eq!(
        (third, next),
        (150, 120),
        "all 200 nodes searched, only 50 feasible"
    );
}

#[tokio::test]
async fn bench_binds_every_pod_in_a_real_database() {
    let report = super::bench(3, 12).await.unwrap();
    assert_eq!(report.binds, 12);
    assert!(report.binds_per_second > 0.0);
}

#[tokio::test]
async fn a_pass_puts_its_binds_in_the_cache_before_the_watch_brings_them() {
    let (_dir, objects) = crate::objects::test_objects().await;
    super::bench::populate(&objects, 3, 3).await.unwrap();
    let (mut cache, _) = super::cache::Cache::load(&objects).await.unwrap();
    assert!(cache.has_pending());
    let recorder = crate::events::Recorder::new(objects.clone(), "default-scheduler");
    let events = crate::events::EventQueue::spawn(recorder.clone());
    let mut binds = super::Binds::default();
    let (nodes, pods) = (cache.nodes(), cache.pods());
    let volumes = cache.volumes();
    let bound = super::pass(
        &objects, &recorder, &events, &nodes, pods, volumes, &mut binds,
    )
    .await
    .unwrap();
    assert_eq!(bound, 3);
    // No watch was read: the next pass's snapshot knows where these pods went from the pass itself.
    for (namespace, name, node) in binds.committed.drain(..) {
        cache.assume(namespace, name, node);
    }
    assert!(!cache.has_pending());
    let placed = cache
        .pods()
        .iter()
        .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
        .count();
    assert_eq!(placed, 3, "every pod of the pass is bound in the cache");
}
