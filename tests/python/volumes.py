"""CoreV1Api and StorageV1Api against herd: the default StorageClass, a claim given it by admission, a pod
writing to the claim (so the local provisioner makes its volume on the pod's node), the bound claim and
volume read back, a pod created again finding the data, an invalid claim refused, and the claim deleted
with its volume (reclaim policy Delete).

Usage: volumes.py --kubeconfig FILE --namespace NS --hello-image IMG --node NODE
"""

from kubernetes import client

from herdtest import check, connect, equal, expect_error, parser, run, wait_until


def writer(name, image, line):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[
                client.V1Container(
                    name="hello",
                    image=image,
                    args=[f"--append=/data/log.txt={line}"],
                    volume_mounts=[client.V1VolumeMount(name="data", mount_path="/data")],
                )
            ],
            volumes=[
                client.V1Volume(
                    name="data",
                    persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name="data"),
                )
            ],
        ),
    )


def run_writer(core, ns, name, image, line):
    core.create_namespaced_pod(ns, writer(name, image, line))
    wait_until(
        f"pod {name} Succeeded",
        lambda: core.read_namespaced_pod(name, ns).status.phase == "Succeeded",
    )
    log = core.read_namespaced_pod_log(name, ns)
    core.delete_namespaced_pod(name, ns)
    wait_until(f"pod {name} gone", lambda: name not in [p.metadata.name for p in core.list_namespaced_pod(ns).items])
    return log


def main():
    p = parser(__doc__)
    p.add_argument("--hello-image", required=True)
    p.add_argument("--node", required=True)
    args = p.parse_args()
    core, _ = connect(args.kubeconfig)
    storage = client.StorageV1Api()
    ns = args.namespace
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    classes = storage.list_storage_class().items
    defaults = [
        c.metadata.name
        for c in classes
        if (c.metadata.annotations or {}).get("storageclass.kubernetes.io/is-default-class") == "true"
    ]
    equal(defaults, ["standard"], "the default StorageClass")
    standard = storage.read_storage_class("standard")
    equal(
        (standard.provisioner, standard.volume_binding_mode, standard.reclaim_policy),
        ("herd.dev/local", "WaitForFirstConsumer", "Delete"),
        "the default class's provisioner, binding mode and reclaim policy",
    )

    body = expect_error(
        422,
        "Invalid",
        core.create_namespaced_persistent_volume_claim,
        ns,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="bad"),
            spec=client.V1PersistentVolumeClaimSpec(access_modes=["ReadWriteOnce"]),
        ),
    )
    equal(body["details"]["causes"][0]["field"], "spec.resources[storage]", "the missing request's field")

    claim = core.create_namespaced_persistent_volume_claim(
        ns,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="data"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "32Mi"}),
            ),
        ),
    )
    equal(claim.spec.storage_class_name, "standard", "DefaultStorageClass admission")
    equal(claim.status.phase, "Pending", "a new claim's phase")

    first = run_writer(core, ns, "first", args.hello_image, "from python 1")
    check("from python 1" in first, f"the first pod wrote its line ({first!r})")
    bound = core.read_namespaced_persistent_volume_claim("data", ns)
    equal(bound.status.phase, "Bound", "the claim's phase after its first pod")
    equal(bound.status.capacity, {"storage": "32Mi"}, "the bound claim's capacity")
    equal(
        bound.metadata.annotations.get("volume.kubernetes.io/selected-node"),
        args.node,
        "the node the scheduler selected",
    )
    pv = core.read_persistent_volume(bound.spec.volume_name)
    equal(pv.spec.claim_ref.name, "data", "the volume's claimRef")
    equal(pv.spec.persistent_volume_reclaim_policy, "Delete", "the class's reclaim policy")
    check(pv.spec.local.path.endswith("/" + pv.metadata.name), f"a local path named after the volume ({pv.spec.local.path})")
    term = pv.spec.node_affinity.required.node_selector_terms[0].match_expressions[0]
    equal((term.key, term.operator, term.values), ("kubernetes.io/hostname", "In", [args.node]), "the volume's node affinity")

    second = run_writer(core, ns, "second", args.hello_image, "from python 2")
    check("from python 1\nfrom python 2" in second, f"the second pod read the first one's line ({second!r})")

    core.delete_namespaced_persistent_volume_claim("data", ns)
    wait_until(
        "the claim's volume deleted",
        lambda: pv.metadata.name not in [v.metadata.name for v in core.list_persistent_volume().items],
        timeout=60,
    )


if __name__ == "__main__":
    run(main)
