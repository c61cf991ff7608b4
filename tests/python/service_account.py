"""A ServiceAccount bound to `view`, through the Python client with its token: it lists, it cannot create (kube's
403 Status, nothing stored), and SelfSubjectReview names it.

Usage: service_account.py --kubeconfig FILE --namespace NS (the kubeconfig holds the ServiceAccount's token)
"""

import json

from kubernetes import client

from herdtest import check, connect, equal, parser, run


def main():
    args = parser(__doc__).parse_args()
    core, _ = connect(args.kubeconfig)
    ns = args.namespace

    review = client.AuthenticationV1Api().create_self_subject_review({})
    equal(review.status.user_info.username, "system:serviceaccount:default:viewer", "SelfSubjectReview's user")

    core.list_namespaced_pod(ns)
    check(True, "view lists pods")

    try:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "from-python"}})
    except client.ApiException as e:
        equal(e.status, 403, "create's status")
        status = json.loads(e.body)
        equal(status["reason"], "Forbidden", "the Status reason")
        equal(
            status["message"],
            'configmaps is forbidden: User "system:serviceaccount:default:viewer" cannot create resource '
            f'"configmaps" in API group "" in the namespace "{ns}"',
            "kube's wording",
        )
    else:
        check(False, "view created a ConfigMap")

    allowed = client.AuthorizationV1Api().create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"namespace": ns, "verb": "create", "resource": "configmaps"}}}
    )
    equal(allowed.status.allowed, False, "SelfSubjectAccessReview create configmaps")


if __name__ == "__main__":
    run(main)
