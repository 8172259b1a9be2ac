"""A run over unchanged Tasks writes nothing: counted by the API server itself.

``apiserver_request_total`` on the API server's ``/metrics`` counts every
request by verb and resource, whoever sent it, so the count cannot miss a
write the poller makes through some other path.
"""

from __future__ import annotations

import re

from tests.integration.poller_helpers import (  # noqa: F401 - poll is a fixture
    create, events, poll, read, wait_for_first_status)

WRITE_VERBS = ("POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION")


def api_writes(plane) -> dict[str, float]:
    """Write requests the API server has answered so far, by resource; the poller's
    own Lease is left out (a run takes and gives it back, whatever the Tasks)."""
    counts: dict[str, float] = {}
    for line in plane.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels, _, value = line.rpartition(" ")
        verb = re.search(r'verb="([A-Z]+)"', labels)
        resource = re.search(r'resource="([^"]*)"', labels)
        if verb and resource and verb[1] in WRITE_VERBS and resource[1] != "leases":
            counts[resource[1]] = counts.get(resource[1], 0) + float(value)
    return counts


def written(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after.get(key, 0) - before.get(key, 0) for key in after
            if after.get(key, 0) != before.get(key, 0)}


def test_a_second_run_over_unchanged_tasks_writes_nothing(stack, sandbox, kube_api,
                                                         namespace, poll):
    # Tasks in every state a run leaves alone: finished, delivered, failed,
    # waiting for a delivery retry or a submission retry, running, waiting.
    create(kube_api, namespace, "done")
    create(kube_api, namespace, "crashed", image="ghcr.io/fntc-sandbox/analytics:crash")
    create(kube_api, namespace, "retrying", repository="fntc-sandbox/not-installed")
    wait_for_first_status(kube_api, namespace, ["done", "crashed", "retrying"])
    sandbox.clock.advance(10)
    create(kube_api, namespace, "running")
    create(kube_api, namespace, "waiting", image="ghcr.io/fntc-sandbox/analytics:pull-error")
    wait_for_first_status(kube_api, namespace, ["running", "waiting"])
    sandbox.clock.advance(3)
    create(kube_api, namespace, "scheduled")
    sandbox.fn_faults.add("POST", "/tasks/validate", 503, body={"error": "down"})
    create(kube_api, namespace, "deferred")
    names = ["done", "crashed", "retrying", "running", "waiting", "scheduled", "deferred"]
    wait_for_first_status(kube_api, namespace, names)
    assert read(kube_api, namespace, "deferred")["status"]["phase"] == "Pending"

    sandbox.fn_faults.add("POST", "/tasks/validate", 503, body={"error": "still down"})
    backoff = {"FNTC_SUBMIT_BACKOFF_BASE": "600"}
    counted = api_writes(stack.plane)
    first = poll(**backoff)
    first_writes = written(counted, api_writes(stack.plane))
    assert first.changed == len(names) and first.errors == 0
    assert first_writes.get("tasks", 0) >= len(names), first_writes
    assert first_writes.get("events", 0) >= 1, first_writes

    expected = {"done": ("Succeeded", "Delivered"), "crashed": ("Failed", "NotApplicable"),
                "retrying": ("Succeeded", "Retrying"), "running": ("Running", None),
                "waiting": ("Submitted", None), "scheduled": ("Submitted", None),
                "deferred": ("Pending", None)}
    tasks = {name: read(kube_api, namespace, name) for name in names}
    assert {name: (task["status"]["phase"], task["status"].get("results", {}).get("state"))
            for name, task in tasks.items()} == expected
    assert tasks["deferred"]["status"]["submission"]["attempts"] == 2
    told = {name: len(events(kube_api, namespace, name)) for name in names}

    counted = api_writes(stack.plane)
    second = poll(**backoff)
    assert written(counted, api_writes(stack.plane)) == {}
    assert (second.seen, second.changed, second.errors) == (len(names), 0, 0)
    assert {name: read(kube_api, namespace, name)["metadata"]["resourceVersion"]
            for name in names} == \
        {name: task["metadata"]["resourceVersion"] for name, task in tasks.items()}
    assert {name: len(events(kube_api, namespace, name)) for name in names} == told
