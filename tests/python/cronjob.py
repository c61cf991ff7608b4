"""BatchV1Api against herd: a CronJob created, read (its defaults, status subresource), listed, suspended
with a patch, refused when invalid, and deleted.

Usage: cronjob.py --kubeconfig FILE --namespace NS --hello-image IMG
"""

from kubernetes import client

from herdtest import check, connect, equal, expect_error, parser, run, wait_until


def cronjob(name, schedule, image, time_zone=None):
    return client.V1CronJob(
        metadata=client.V1ObjectMeta(name=name, labels={"suite": "py-cron"}),
        spec=client.V1CronJobSpec(
            schedule=schedule,
            time_zone=time_zone,
            job_template=client.V1JobTemplateSpec(
                spec=client.V1JobSpec(
                    template=client.V1PodTemplateSpec(
                        spec=client.V1PodSpec(
                            restart_policy="Never",
                            containers=[client.V1Container(name="hello", image=image, args=["from python"])],
                        )
                    )
                )
            ),
        ),
    )


def main():
    p = parser(__doc__)
    p.add_argument("--hello-image", required=True)
    args = p.parse_args()
    core, _ = connect(args.kubeconfig)
    batch = client.BatchV1Api()
    ns = args.namespace
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    created = batch.create_namespaced_cron_job(ns, cronjob("nightly", "0 3 * * *", args.hello_image, "Asia/Tokyo"))
    check(isinstance(created, client.V1CronJob), "create_namespaced_cron_job returns a V1CronJob")
    equal(created.spec.concurrency_policy, "Allow", "defaulted concurrencyPolicy")
    equal(created.spec.suspend, False, "defaulted suspend")
    equal(
        (created.spec.successful_jobs_history_limit, created.spec.failed_jobs_history_limit),
        (3, 1),
        "defaulted history limits",
    )
    equal(created.spec.time_zone, "Asia/Tokyo", "timeZone kept")

    read = batch.read_namespaced_cron_job("nightly", ns)
    equal(read.spec.schedule, "0 3 * * *", "read schedule")
    status = batch.read_namespaced_cron_job_status("nightly", ns)
    equal(status.status.active, None, "no active jobs before 3am Tokyo time")

    batch.create_namespaced_cron_job(ns, cronjob("often", "*/5 * * * *", args.hello_image))
    names = sorted(c.metadata.name for c in batch.list_namespaced_cron_job(ns, label_selector="suite=py-cron").items)
    equal(names, ["nightly", "often"], "list by label selector")
    everywhere = [c.metadata.name for c in batch.list_cron_job_for_all_namespaces().items if c.metadata.namespace == ns]
    equal(sorted(everywhere), ["nightly", "often"], "list across namespaces")

    patched = batch.patch_namespaced_cron_job("nightly", ns, {"spec": {"suspend": True}})
    equal(patched.spec.suspend, True, "suspended by a strategic merge patch")
    check(patched.metadata.generation == 2, f"the spec change bumps generation (got {patched.metadata.generation})")
    equal(batch.read_namespaced_cron_job("nightly", ns).spec.suspend, True, "suspend reads back")

    body = expect_error(
        422, "Invalid", batch.create_namespaced_cron_job, ns, cronjob("bad", "61 * * * *", args.hello_image)
    )
    equal(
        body["details"]["causes"],
        [
            {
                "reason": "FieldValueInvalid",
                "field": "spec.schedule",
                "message": 'Invalid value: "61 * * * *": end of range (61) above maximum (59): 61',
            }
        ],
        "kube's cause for a bad schedule",
    )
    body = expect_error(
        422,
        "Invalid",
        batch.create_namespaced_cron_job,
        ns,
        cronjob("bad", "TZ=UTC 0 * * * *", args.hello_image),
    )
    equal(
        body["details"]["causes"][0]["message"],
        'Invalid value: "TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone field instead',
        "kube's message for a TZ= schedule",
    )

    batch.delete_namespaced_cron_job("often", ns, propagation_policy="Background")
    expect_error(404, "NotFound", batch.read_namespaced_cron_job, "often", ns)
    wait_until(
        "only nightly is left",
        lambda: [c.metadata.name for c in batch.list_namespaced_cron_job(ns).items] == ["nightly"],
        timeout=30,
    )


if __name__ == "__main__":
    run(main)
