"""AppsV1Api against herd: a StatefulSet created (kube's defaults), read, listed, its pods named by
ordinal, patched (a new update revision), scaled through the scale subresource, refused an immutable
change, and deleted with its pods.

Usage: statefulset.py --kubeconfig FILE --namespace NS --hello-image IMG
"""

from kubernetes import client

from herdtest import check, connect, equal, expect_error, parser, run, wait_until


def statefulset(name, image, replicas):
    return client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name=name, labels={"suite": "py-sts"}),
        spec=client.V1StatefulSetSpec(
            service_name=name,
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="hello", image=image)]),
            ),
        ),
    )


def main():
    p = parser(__doc__)
    p.add_argument("--hello-image", required=True)
    args = p.parse_args()
    core, _ = connect(args.kubeconfig)
    apps = client.AppsV1Api()
    ns = args.namespace
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    created = apps.create_namespaced_stateful_set(ns, statefulset("db", args.hello_image, 2))
    check(isinstance(created, client.V1StatefulSet), "create_namespaced_stateful_set returns a V1StatefulSet")
    equal(created.spec.pod_management_policy, "OrderedReady", "defaulted podManagementPolicy")
    equal(created.spec.update_strategy.type, "RollingUpdate", "defaulted updateStrategy")
    equal(created.spec.update_strategy.rolling_update.partition, 0, "defaulted partition")
    equal(created.spec.revision_history_limit, 10, "defaulted revisionHistoryLimit")
    equal(
        (
            created.spec.persistent_volume_claim_retention_policy.when_deleted,
            created.spec.persistent_volume_claim_retention_policy.when_scaled,
        ),
        ("Retain", "Retain"),
        "defaulted persistentVolumeClaimRetentionPolicy",
    )

    # The first pod is db-0; db-1 waits for it to be Running and Ready.
    wait_until(
        "db-0",
        lambda: [p.metadata.name for p in core.list_namespaced_pod(ns, label_selector="app=db").items] == ["db-0"],
        timeout=30,
    )
    pod = core.read_namespaced_pod("db-0", ns)
    equal((pod.spec.hostname, pod.spec.subdomain), ("db-0", "db"), "the pod's stable network identity")
    equal(pod.metadata.owner_references[0].kind, "StatefulSet", "the pod's controller")
    wait_until(
        "the status names the revision",
        lambda: (apps.read_namespaced_stateful_set_status("db", ns).status.update_revision or "").startswith("db-"),
        timeout=30,
    )
    first = apps.read_namespaced_stateful_set("db", ns).status.update_revision
    equal(pod.metadata.labels["controller-revision-hash"], first, "the pod carries its revision")

    names = [s.metadata.name for s in apps.list_namespaced_stateful_set(ns, label_selector="suite=py-sts").items]
    equal(names, ["db"], "list by label selector")

    patched = apps.patch_namespaced_stateful_set(
        "db", ns, {"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}}
    )
    equal(patched.metadata.generation, 2, "a template change bumps generation")
    wait_until(
        "a new update revision",
        lambda: apps.read_namespaced_stateful_set("db", ns).status.update_revision not in (None, first),
        timeout=30,
    )
    revisions = apps.list_namespaced_controller_revision(ns).items
    equal(sorted(r.revision for r in revisions), [1, 2], "one ControllerRevision per template")

    scale = apps.read_namespaced_stateful_set_scale("db", ns)
    equal((scale.spec.replicas, scale.status.selector), (2, "app=db"), "the Scale of the set")
    apps.patch_namespaced_stateful_set_scale("db", ns, {"spec": {"replicas": 3}})
    equal(apps.read_namespaced_stateful_set("db", ns).spec.replicas, 3, "scaled through the subresource")

    body = expect_error(422, "Invalid", apps.patch_namespaced_stateful_set, "db", ns, {"spec": {"serviceName": "x"}})
    check(
        "updates to statefulset spec for fields other than" in body["message"],
        f"kube's message for an immutable field: {body['message']}",
    )

    apps.delete_namespaced_stateful_set("db", ns, propagation_policy="Background")
    expect_error(404, "NotFound", apps.read_namespaced_stateful_set, "db", ns)
    wait_until(
        "the set's pods are gone",
        lambda: core.list_namespaced_pod(ns, label_selector="app=db").items == [],
        timeout=60,
    )


if __name__ == "__main__":
    run(main)
