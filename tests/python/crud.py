"""CoreV1Api and AppsV1Api against herd: create, read, list, patch (strategic, JSON, merge), replace,
delete, pod logs, deployments and their scale subresource, nodes.

Usage: crud.py --kubeconfig FILE --namespace NS --hello-image IMG --http-hello-image IMG --node NAME
"""

from kubernetes import client

from herdtest import check, connect, equal, expect_error, parser, run, wait_until


def main():
    p = parser(__doc__)
    p.add_argument("--hello-image", required=True)
    p.add_argument("--http-hello-image", required=True)
    p.add_argument("--node", required=True)
    args = p.parse_args()
    core, apps = connect(args.kubeconfig)
    ns = args.namespace

    # Namespace.
    created = core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    check(isinstance(created, client.V1Namespace), "create_namespace returns a V1Namespace")
    equal(core.read_namespace(ns).status.phase, "Active", "namespace phase")

    # ConfigMap: create, read, list by label, three kinds of patch, replace, delete.
    cm = core.create_namespaced_config_map(
        ns, {"metadata": {"name": "cfg", "labels": {"suite": "py"}}, "data": {"a": "1"}}
    )
    check(cm.metadata.uid and cm.metadata.resource_version, "created config map has uid and resourceVersion")
    check(cm.metadata.creation_timestamp is not None, "creationTimestamp parses as a datetime")
    equal(core.read_namespaced_config_map("cfg", ns).data, {"a": "1"}, "read data")
    names = [i.metadata.name for i in core.list_namespaced_config_map(ns, label_selector="suite=py").items]
    equal(names, ["cfg"], "list by label selector")
    listed = core.list_namespaced_config_map(ns)
    check(listed.metadata.resource_version, "a list carries a resourceVersion")
    # A dict body is sent as a strategic merge patch.
    equal(core.patch_namespaced_config_map("cfg", ns, {"data": {"b": "2"}}).data, {"a": "1", "b": "2"}, "strategic merge patch")
    # A list body is sent as a JSON patch.
    patched = core.patch_namespaced_config_map("cfg", ns, [{"op": "replace", "path": "/data/a", "value": "10"}])
    equal(patched.data, {"a": "10", "b": "2"}, "JSON patch")
    patched = core.patch_namespaced_config_map(
        "cfg", ns, {"data": {"b": None}}, _content_type="application/merge-patch+json"
    )
    equal(patched.data, {"a": "10"}, "merge patch deletes a key with null")
    stale = core.read_namespaced_config_map("cfg", ns)
    core.patch_namespaced_config_map("cfg", ns, {"data": {"a": "11"}})
    stale.data = {"a": "stale"}
    expect_error(409, "Conflict", core.replace_namespaced_config_map, "cfg", ns, stale)
    fresh = core.read_namespaced_config_map("cfg", ns)
    equal(fresh.data, {"a": "11"}, "a conflicting replace changes nothing")
    fresh.data = {"a": "12"}
    equal(core.replace_namespaced_config_map("cfg", ns, fresh).data, {"a": "12"}, "replace with the current resourceVersion")
    expect_error(
        409, "AlreadyExists", core.create_namespaced_config_map, ns, {"metadata": {"name": "cfg"}, "data": {}}
    )
    status = core.delete_namespaced_config_map("cfg", ns)
    check(status is not None, "delete answers")
    expect_error(404, "NotFound", core.read_namespaced_config_map, "cfg", ns)

    # Pod: runs to completion; its log through read_namespaced_pod_log.
    core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "greeter", "labels": {"app": "greeter"}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "hello", "image": args.hello_image, "args": ["--name", "py"]}],
            },
        },
    )
    pod = wait_until(
        "greeter Succeeded",
        lambda: (lambda p: p if p.status.phase == "Succeeded" else None)(core.read_namespaced_pod("greeter", ns)),
    )
    equal(pod.spec.node_name, args.node, "greeter's node")
    equal(pod.status.container_statuses[0].state.terminated.exit_code, 0, "exit code")
    log = core.read_namespaced_pod_log("greeter", ns)
    check(log.startswith("Hello from herd!\n"), f"log starts with the greeting: {log!r}")
    check('args: ["--name", "py"]' in log, "log has the args line")
    last = core.read_namespaced_pod_log("greeter", ns, tail_lines=1)
    equal(last, log.splitlines()[-1] + "\n", "tail_lines=1")
    done = core.list_namespaced_pod(ns, field_selector="status.phase=Succeeded").items
    equal([p.metadata.name for p in done], ["greeter"], "field selector status.phase")
    everywhere = core.list_pod_for_all_namespaces(label_selector="app=greeter").items
    equal([(p.metadata.namespace, p.metadata.name) for p in everywhere], [(ns, "greeter")], "list across namespaces")
    core.delete_namespaced_pod("greeter", ns)
    wait_until("greeter gone", lambda: not core.list_namespaced_pod(ns, field_selector="metadata.name=greeter").items)

    # Deployment: create, wait ready, scale subresource, strategic patch, foreground delete.
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "web", "labels": labels},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "http-hello",
                                "image": args.http_hello_image,
                                "ports": [{"containerPort": 8080}],
                                "env": [{"name": "A", "value": "1"}],
                            }
                        ]
                    },
                },
            },
        },
    )

    def rolled_out(replicas):
        d = apps.read_namespaced_deployment("web", ns)
        s = d.status
        if (
            s is not None
            and s.observed_generation == d.metadata.generation
            and s.replicas == replicas
            and s.ready_replicas == replicas
            and s.available_replicas == replicas
            and s.updated_replicas == replicas
        ):
            return d
        return None

    d = wait_until("web 2/2 available", lambda: rolled_out(2))
    pods = core.list_namespaced_pod(ns, label_selector="app=web").items
    equal(sorted(p.status.phase for p in pods), ["Running", "Running"], "2 running web pods")
    sets = apps.list_namespaced_replica_set(ns, label_selector="app=web").items
    equal(len(sets), 1, "one ReplicaSet")
    owner = sets[0].metadata.owner_references[0]
    equal((owner.kind, owner.name, owner.controller), ("Deployment", "web", True), "ReplicaSet owner")

    scale = apps.read_namespaced_deployment_scale("web", ns)
    check(isinstance(scale, client.V1Scale), "read scale returns a V1Scale")
    equal(scale.spec.replicas, 2, "scale.spec.replicas")
    equal(scale.status.replicas, 2, "scale.status.replicas")
    scale = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 1}})
    equal(scale.spec.replicas, 1, "patched scale")
    wait_until("web scaled to 1", lambda: rolled_out(1))
    wait_until("one web pod left", lambda: len(core.list_namespaced_pod(ns, label_selector="app=web").items) == 1)

    generation = d.metadata.generation
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "http-hello", "env": [{"name": "B", "value": "2"}]}]}}}}
    d = apps.patch_namespaced_deployment("web", ns, patch)
    env = [(e.name, e.value) for e in d.spec.template.spec.containers[0].env]
    # kube-apiserver's strategic merge puts patch-only items before server-only ones (mergeSortedSlice).
    equal(env, [("B", "2"), ("A", "1")], "strategic merge of env by name")
    check(d.metadata.generation > generation, "a template change bumps generation")
    wait_until("web rolled out with B=2", lambda: rolled_out(1))

    apps.delete_namespaced_deployment("web", ns, propagation_policy="Foreground")
    wait_until(
        "web and its dependents gone",
        lambda: not apps.list_namespaced_deployment(ns).items
        and not apps.list_namespaced_replica_set(ns).items
        and not core.list_namespaced_pod(ns, label_selector="app=web").items,
    )
    expect_error(404, "NotFound", apps.read_namespaced_deployment, "web", ns)

    # Nodes.
    nodes = core.list_node().items
    node = next((n for n in nodes if n.metadata.name == args.node), None)
    check(node is not None, f"node {args.node} is listed")
    ready = [c.status for c in node.status.conditions if c.type == "Ready"]
    equal(ready, ["True"], "node Ready condition")
    check(node.status.node_info.kubelet_version.startswith("v"), "node reports a kubelet version")


if __name__ == "__main__":
    run(main)
