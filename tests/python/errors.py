"""Errors through the Python client: ApiException with kube-apiserver's Status (code, reason, details,
causes) for NotFound, AlreadyExists, Invalid and Conflict; nothing stored. (Unknown fields cannot be sent
through the typed client: its pydantic models refuse them before any request.)

Usage: errors.py --kubeconfig FILE --namespace NS
"""

from herdtest import check, connect, equal, expect_error, parser, run


def main():
    args = parser(__doc__).parse_args()
    core, apps = connect(args.kubeconfig)
    ns = args.namespace
    core.create_namespace({"metadata": {"name": ns}})

    body = expect_error(404, "NotFound", core.read_namespaced_pod, "nope", ns)
    equal(body.get("message"), 'pods "nope" not found', "NotFound message")
    equal(body.get("details", {}).get("name"), "nope", "NotFound details.name")
    equal(body.get("details", {}).get("kind"), "pods", "NotFound details.kind")
    body = expect_error(404, "NotFound", apps.read_namespaced_deployment, "nope", ns)
    equal(body.get("message"), 'deployments.apps "nope" not found', "NotFound message names the group")

    cm = {"metadata": {"name": "dup"}, "data": {"a": "1"}}
    core.create_namespaced_config_map(ns, cm)
    body = expect_error(409, "AlreadyExists", core.create_namespaced_config_map, ns, cm)
    equal(body.get("message"), 'configmaps "dup" already exists', "AlreadyExists message")

    # 422 Invalid: every bad field as a cause; nothing stored.
    bad = {"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c"}]}}
    body = expect_error(422, "Invalid", core.create_namespaced_pod, ns, bad)
    equal(body.get("details", {}).get("kind"), "Pod", "Invalid details.kind")
    equal(body.get("details", {}).get("name"), "Bad_Name", "Invalid details.name")
    causes = {(c.get("field"), c.get("reason")) for c in body.get("details", {}).get("causes", [])}
    check(("metadata.name", "FieldValueInvalid") in causes, f"a FieldValueInvalid cause for metadata.name: {causes}")
    check(("spec.containers[0].image", "FieldValueRequired") in causes, f"a FieldValueRequired cause for the image: {causes}")
    check(body.get("message", "").startswith('Pod "Bad_Name" is invalid: '), f"Invalid message: {body.get('message')}")
    equal(core.list_namespaced_pod(ns).items, [], "no pod stored")

    # Conflict on a stale resourceVersion.
    current = core.read_namespaced_config_map("dup", ns)
    stale_rv = current.metadata.resource_version
    core.patch_namespaced_config_map("dup", ns, {"data": {"a": "2"}})
    current.metadata.resource_version = stale_rv
    current.data = {"a": "stale"}
    body = expect_error(409, "Conflict", core.replace_namespaced_config_map, "dup", ns, current)
    check("the object has been modified" in body.get("message", ""), f"Conflict message: {body.get('message')}")
    equal(core.read_namespaced_config_map("dup", ns).data, {"a": "2"}, "the newer write stays")

    # An update that would make a Deployment invalid changes nothing.
    labels = {"app": "d"}
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "d"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "127.0.0.1:9/absent:v1"}]},
                },
            },
        },
    )
    before = apps.read_namespaced_deployment("d", ns)
    body = expect_error(422, "Invalid", apps.patch_namespaced_deployment, "d", ns, {"spec": {"replicas": -1}})
    fields = [c.get("field") for c in body.get("details", {}).get("causes", [])]
    equal(fields, ["spec.replicas"], "the cause names spec.replicas")
    after = apps.read_namespaced_deployment("d", ns)
    # (Not the resourceVersion: the deployment controller writes status concurrently.)
    equal(
        (after.metadata.generation, after.spec.replicas),
        (before.metadata.generation, before.spec.replicas),
        "generation and spec unchanged",
    )


if __name__ == "__main__":
    run(main)
