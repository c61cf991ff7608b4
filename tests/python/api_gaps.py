"""Collections deleted by selector (deletecollection), a Service's default status and /version/ through the
Python client.

Usage: api_gaps.py --kubeconfig FILE --namespace NS
"""

from kubernetes import client

from herdtest import check, connect, equal, parser, run


def main():
    args = parser(__doc__).parse_args()
    core, apps = connect(args.kubeconfig)
    ns = args.namespace
    core.create_namespace({"metadata": {"name": ns}})

    # deletecollection with a label selector: only the matching objects go.
    for name, tier in [("a", "web"), ("b", "web"), ("c", "db")]:
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": {"tier": tier}}})
    core.delete_collection_namespaced_config_map(ns, label_selector="tier=web")
    # kube-root-ca.crt is the control plane's, in every namespace.
    left = sorted(cm.metadata.name for cm in core.list_namespaced_config_map(ns, label_selector="tier").items)
    equal(left, ["c"], "config maps left after deleting tier=web")

    # ... and with a field selector.
    for name in ["p1", "p2"]:
        core.create_namespaced_pod(
            ns, {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "example/app:v1"}]}}
        )
    core.delete_collection_namespaced_pod(ns, field_selector="metadata.name=p1")
    left = sorted(p.metadata.name for p in core.list_namespaced_pod(ns).items)
    equal(left, ["p2"], "pods left after deleting metadata.name=p1")

    # A dry run deletes nothing.
    core.delete_collection_namespaced_pod(ns, dry_run="All")
    equal(len(core.list_namespaced_pod(ns).items), 1, "pods left after a dry-run deletecollection")

    # Every Service carries status.loadBalancer, as kube-apiserver writes it.
    svc = core.create_namespaced_service(
        ns, {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 8080}], "selector": {"app": "s"}}}
    )
    raw = core.api_client.sanitize_for_serialization(svc)
    equal(raw.get("status"), {"loadBalancer": {}}, "a new Service's status")

    # /version/ answers as /version: the client's VersionApi asks for it with the trailing slash.
    info = client.VersionApi(core.api_client).get_code()
    check(info.git_version.startswith("v1."), f"/version/ gitVersion: {info}")

if __name__ == "__main__":
    run(main)
