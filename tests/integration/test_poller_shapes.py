"""Every FN status shape, through the real API server: phase, reason, conditions, Events.

The sandbox images play each ending (crash, OOM, an image that never pulls, an
evicted pod); a cancel goes through the FN's own API; answers the stand-in
would not give by itself (shapes FNTC does not know, answers older than what
a Task shows) come from the stand-in's task state or injected faults.
"""

from __future__ import annotations

from tests.integration.poller_helpers import (  # noqa: F401 - poll is a fixture
    RFC3339, cancel_on_fn, condition, create, events, poll, read, wait_for_first_status)


IMAGES = {
    "ok": "ghcr.io/fntc-sandbox/analytics:1.0",
    "crash": "ghcr.io/fntc-sandbox/analytics:crash",
    "oom": "ghcr.io/fntc-sandbox/analytics:oom",
    "pull": "ghcr.io/fntc-sandbox/analytics:pull-error",
    "evicted": "ghcr.io/fntc-sandbox/analytics:evicted",
    "cancel": "ghcr.io/fntc-sandbox/analytics:1.0",
}


def test_every_ending_of_an_fn_task(stack, sandbox, kube_api, namespace, poll):
    for name, image in IMAGES.items():
        create(kube_api, namespace, name, image=image)
    wait_for_first_status(kube_api, namespace, list(IMAGES))
    tasks = {name: read(kube_api, namespace, name) for name in IMAGES}
    assert {task["status"]["phase"] for task in tasks.values()} == {"Submitted"}

    # Scheduled: same phase, a new reason, one Event each.
    summary = poll()
    assert (summary.seen, summary.changed, summary.errors) == (6, 6, 0)
    for name in IMAGES:
        task = read(kube_api, namespace, name)
        assert (task["status"]["phase"], task["status"]["reason"]) == \
            ("Submitted", "Scheduled")
        assert events(kube_api, namespace, name) == [("Submitted", "Normal"),
                                                    ("Scheduled", "Normal")]

    # Running; the image that cannot be pulled waits instead.
    sandbox.clock.advance(3)
    poll()
    cancelled_id = read(kube_api, namespace, "cancel")["status"]["taskId"]
    cancel_on_fn(stack, cancelled_id)
    for name in ("ok", "crash", "oom", "evicted"):
        task = read(kube_api, namespace, name)
        assert (task["status"]["phase"], task["status"]["reason"]) == ("Running", "Running")
        assert RFC3339.match(task["status"]["startedAt"])
        running = condition(task, "Running")
        assert (running["status"], running["reason"]) == ("True", "Running")
    pull = read(kube_api, namespace, "pull")
    assert (pull["status"]["phase"], pull["status"]["reason"]) == ("Submitted", "Waiting")
    assert "pullable" in pull["status"]["message"]

    sandbox.clock.advance(10)
    summary = poll()
    assert summary.errors == 0
    expected = {
        "ok": ("Succeeded", "Completed", 0),
        "crash": ("Failed", "Error", 1),
        "oom": ("Failed", "OOMKilled", 137),
        "evicted": ("Failed", "PodDeleted", None),
        "cancel": ("Cancelled", "Cancelled", None),
        "pull": ("Submitted", "Waiting", None),
    }
    for name, (phase, reason, exit_code) in expected.items():
        status = read(kube_api, namespace, name)["status"]
        assert (status["phase"], status["reason"], status.get("exitCode")) == \
            (phase, reason, exit_code), name
    oom = read(kube_api, namespace, "oom")
    assert "memory" in oom["status"]["message"]
    assert oom["status"]["results"] == {"state": "NotApplicable"}
    assert RFC3339.match(oom["status"]["finishedAt"])
    succeeded = condition(oom, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "OOMKilled")
    assert events(kube_api, namespace, "oom")[-1] == ("OOMKilled", "Warning")
    assert events(kube_api, namespace, "crash")[-1] == ("Error", "Warning")
    assert events(kube_api, namespace, "evicted")[-1] == ("PodDeleted", "Warning")
    assert events(kube_api, namespace, "cancel")[-1] == ("Cancelled", "Warning")
    for name in ("cancel", "evicted", "crash"):
        ended = read(kube_api, namespace, name)
        assert condition(ended, "Running")["status"] == "False", name
        assert condition(ended, "Succeeded")["status"] == "False", name
    assert condition(read(kube_api, namespace, "cancel"), "Running")["reason"] == "Cancelled"
    assert events(kube_api, namespace, "pull")[-1] == ("Waiting", "Normal")

    ok = read(kube_api, namespace, "ok")
    assert ok["status"]["results"]["state"] == "Delivered"
    assert [(c["type"], c["status"], c["reason"]) for c in ok["status"]["conditions"]] == [
        ("Submitted", "True", "Submitted"), ("Running", "False", "Completed"),
        ("Succeeded", "True", "Completed"), ("ResultsDelivered", "True", "Delivered")]
    for entry in ok["status"]["conditions"]:
        assert entry["observedGeneration"] == ok["metadata"]["generation"]
        assert RFC3339.match(entry["lastTransitionTime"])
        assert entry["message"]
    assert events(kube_api, namespace, "ok") == [
        ("Submitted", "Normal"), ("Scheduled", "Normal"), ("Running", "Normal"),
        ("Succeeded", "Normal"), ("ResultsDelivered", "Normal")]

    # The FN saw each Task once; a run over settled Tasks does nothing at all.
    markers = [t.description for t in sandbox.fn_state.submissions
               if f"namespace={namespace} " in (t.description or "")]
    assert len(markers) == len(set(markers)) == 6
    before = {name: read(kube_api, namespace, name)["metadata"]["resourceVersion"]
              for name in IMAGES}
    summary = poll()
    assert (summary.seen, summary.skipped, summary.changed) == (6, 5, 0)
    assert before == {name: read(kube_api, namespace, name)["metadata"]["resourceVersion"]
                      for name in IMAGES}


def test_describe_reads_as_a_story(stack, sandbox, kube_api, namespace, poll):
    create(kube_api, namespace, "story")
    wait_for_first_status(kube_api, namespace, ["story"])
    poll()
    sandbox.clock.advance(3)
    poll()
    sandbox.clock.advance(10)
    poll()
    text = stack.plane.kubectl("describe", "task", "story", "-n", namespace).stdout
    story = ["Submitted", "Scheduled", "Running", "Succeeded", "ResultsDelivered"]
    events_part = text[text.index("Events:"):]
    positions = [events_part.index(f"  {word} ") for word in story]
    assert positions == sorted(positions), events_part
    table = stack.plane.kubectl("get", "tasks", "-n", namespace, "-o", "wide").stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "PHASE", "FN", "TASK", "DATASET", "USER", "RESULTS",
                              "REASON", "AGE"]
    assert row.split()[:7] == ["story", "Succeeded", str(read(kube_api, namespace, "story")
                                                         ["status"]["taskId"]),
                               "1", "alice@example.org", "Delivered", "Completed"]
