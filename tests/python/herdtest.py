"""Shared helpers for the Python client scripts that tests/e2e/python_client.rs runs against a live herd.

Each script takes --kubeconfig (the file `herd up` wrote) and exits 0 when every check passed; the first
failed check raises CheckFailed, which is printed as one line and exits 1.
"""

import argparse
import json
import sys
import time

from kubernetes import client, config


class CheckFailed(Exception):
    pass


def check(condition, message):
    """Fails the script with `message` unless `condition` holds."""
    if not condition:
        raise CheckFailed(message)
    print(f"ok: {message}", flush=True)


def equal(actual, expected, what):
    check(actual == expected, f"{what} == {expected!r} (got {actual!r})")


def wait_until(what, probe, timeout=90.0, interval=0.2):
    """Calls probe() until it returns a truthy value (returned); fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except client.ApiException as e:  # a transient 404 while an object appears, for example
            last = f"ApiException {e.status}: {e.body}"
        else:
            if last:
                print(f"ok: {what}", flush=True)
                return last
        time.sleep(interval)
    raise CheckFailed(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def api_error(call, *args, **kwargs):
    """Runs call(*args, **kwargs), which must raise ApiException; returns (status, Status body as dict)."""
    try:
        call(*args, **kwargs)
    except client.ApiException as e:
        try:
            body = json.loads(e.body or "{}")
        except ValueError:
            body = {"unparsed": e.body}
        return e.status, body
    raise CheckFailed(f"{call.__name__} succeeded but should have failed")


def expect_error(code, reason, call, *args, **kwargs):
    """Asserts that the call fails with HTTP `code` and a Status of `reason`; returns the Status."""
    status, body = api_error(call, *args, **kwargs)
    check(
        status == code and body.get("kind") == "Status" and body.get("reason") == reason,
        f"{call.__name__} -> {code} {reason} (got {status} {body})",
    )
    return body


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--namespace", required=True)
    return p


def connect(kubeconfig):
    """CoreV1Api and AppsV1Api for the cluster of `kubeconfig`."""
    config.load_kube_config(config_file=kubeconfig)
    return client.CoreV1Api(), client.AppsV1Api()


def run(main):
    """Runs main(), turning a failed check or an unexpected API error into one line and exit status 1."""
    try:
        main()
    except CheckFailed as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except client.ApiException as e:
        print(f"FAILED: unexpected API error {e.status} {e.reason}: {e.body}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("all checks passed", flush=True)
