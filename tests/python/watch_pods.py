"""watch.Watch().stream(list_namespaced_pod, ...) against herd: ADDED, MODIFIED through the phases, DELETED;
resuming from a list's resourceVersion; label and field selectors; timeout_seconds ending the stream.

Usage: watch_pods.py --kubeconfig FILE --namespace NS --hello-image IMG
"""

import queue
import threading
import time

from kubernetes import client, watch

from herdtest import check, connect, equal, parser, run


def hello_pod(name, image, sleep_ms):
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "hello", "image": image, "args": [f"--sleep-ms={sleep_ms}"]}],
        },
    }


def main():
    p = parser(__doc__)
    p.add_argument("--hello-image", required=True)
    args = p.parse_args()
    core, _ = connect(args.kubeconfig)
    ns = args.namespace
    core.create_namespace({"metadata": {"name": ns}})

    # A watch in a thread sees one pod's whole life: ADDED, MODIFIED (Pending -> Running -> Succeeded),
    # DELETED.
    events = queue.Queue()

    def watch_pods():
        w = watch.Watch()
        try:
            for event in w.stream(core.list_namespaced_pod, ns, timeout_seconds=120):
                events.put(event)
                if event["type"] == "DELETED":
                    w.stop()
                    break
        except Exception as e:  # reported to the main thread
            events.put({"type": "ERROR", "error": repr(e)})

    thread = threading.Thread(target=watch_pods, daemon=True)
    thread.start()
    core.create_namespaced_pod(ns, hello_pod("watched", args.hello_image, 1500))

    seen = []
    deleted = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            event = events.get(timeout=1)
        except queue.Empty:
            continue
        check(event["type"] != "ERROR", f"the watch raised nothing: {event.get('error')}")
        pod = event["object"]
        check(isinstance(pod, client.V1Pod), f"a {event['type']} event carries a V1Pod")
        check(isinstance(event["raw_object"], dict), "and the raw object")
        seen.append((event["type"], pod.metadata.name, pod.status.phase if pod.status else None))
        if event["type"] == "MODIFIED" and pod.status and pod.status.phase == "Succeeded" and not deleted:
            core.delete_namespaced_pod("watched", ns)
            deleted = True
        if event["type"] == "DELETED":
            break
    print(f"events: {seen}", flush=True)
    check(seen and seen[0][:2] == ("ADDED", "watched"), "the first event is ADDED watched")
    check(seen[-1][:2] == ("DELETED", "watched"), "the last event is DELETED watched")
    phases = [phase for kind, _, phase in seen if kind == "MODIFIED"]
    check("Running" in phases and "Succeeded" in phases, "MODIFIED events show Running, then Succeeded")
    check(phases.index("Running") < phases.index("Succeeded"), "Running comes before Succeeded")
    thread.join(timeout=10)
    check(not thread.is_alive(), "the watch thread ended after w.stop()")

    # Resume from a list's resourceVersion: only what happened after the list.
    listed = core.list_namespaced_pod(ns)
    equal(listed.items, [], "no pods left")
    core.create_namespaced_pod(ns, hello_pod("later", args.hello_image, 600000))
    w = watch.Watch()
    first = None
    for event in w.stream(core.list_namespaced_pod, ns, resource_version=listed.metadata.resource_version, timeout_seconds=30):
        first = event
        w.stop()
        break
    check(first is not None, "a watch from the list's resourceVersion delivers an event")
    equal((first["type"], first["object"].metadata.name), ("ADDED", "later"), "the first event after the list")

    # Selectors on a watch, and timeout_seconds ending the stream by itself.
    core.create_namespaced_pod(ns, hello_pod("other", args.hello_image, 600000))
    started = time.monotonic()
    names = set()
    for event in watch.Watch().stream(core.list_namespaced_pod, ns, label_selector="app=later", timeout_seconds=3):
        names.add(event["object"].metadata.name)
    elapsed = time.monotonic() - started
    equal(names, {"later"}, "a label-selected watch sees only matching pods")
    check(2 <= elapsed < 20, f"timeout_seconds=3 ended the stream (after {elapsed:.1f}s)")
    names = set()
    for event in watch.Watch().stream(core.list_namespaced_pod, ns, field_selector="metadata.name=other", timeout_seconds=2):
        names.add(event["object"].metadata.name)
    equal(names, {"other"}, "a field-selected watch sees only matching pods")


if __name__ == "__main__":
    run(main)
