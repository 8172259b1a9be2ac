"""Every FN status shape, through the real API server: phase, reason, conditions, Events.

The sandbox images play each ending (crash, OOM, an image that never pulls, an
evicted pod); a cancel goes through the FN's own API; answers the stand-in
would not give by itself (shapes FNTC does not know, answers older than what
a Task shows) come from the stand-in's task state or injected faults.

The helpers at the top are shared by the other ``test_poller_*`` files.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

import pytest
from kubernetes import client

from poller.__main__ import build, run_once, wall_clock
from poller.run import Poller, Summary
from taskcore.fn import FNClient
from taskcore.keycloak import Keycloak
from taskcore.settings import Settings
from taskcore.task import GROUP, PLURAL, VERSION
from tests.conftest import task_manifest

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def poller_env(stack, namespace: str, **settings: str) -> dict[str, str]:
    """The stack's settings, watching this test's namespace only."""
    return {**stack.env(), "FNTC_NAMESPACES": namespace, **settings}


@pytest.fixture
def poll(stack, namespace) -> Callable[..., Summary]:
    """One run of the poller's entry point over this test's namespace.

    The run reads the wall clock, as Keycloak and GitHub do when they judge its
    tokens; a test that needs the poller's time to move hands in ``now``.
    """
    def run(now: Callable | None = None, **settings: str) -> Summary:
        code, summary = run_once(poller_env(stack, namespace, **settings),
                                 now=now or wall_clock)
        assert code == 0 and summary is not None, f"poller run failed with exit code {code}"
        return summary
    return run


def make_poller(stack, kube_api, namespace: str, now: Callable = wall_clock,
                **settings: str) -> Poller:
    """A poller whose parts a test may wrap; run it with ``.run()`` (no Lease)."""
    return build(Settings.from_env(poller_env(stack, namespace, **settings)), kube_api,
                 now=now)


def create(kube_api, namespace: str, name: str, **spec: Any) -> None:
    client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, task_manifest(name, namespace, **spec))


def read(kube_api, namespace: str, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)


def wait_for_first_status(kube_api, namespace: str, names: list[str]) -> None:
    """The webhook writes a Task's first status, then its Event, just after the
    Task is stored; a poller run starting earlier would race with it."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if all(read(kube_api, namespace, name).get("status") and
               events(kube_api, namespace, name) for name in names):
            return
        time.sleep(0.05)
    raise AssertionError("the webhook did not write the first status and Event")


def events(kube_api, namespace: str, name: str) -> list[tuple[str, str]]:
    """(reason, type) of the Task's Events in the order the API server lists them."""
    listed = client.CoreV1Api(kube_api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}").items
    return [(event.reason, event.type) for event in listed]


def condition(task: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in task["status"]["conditions"] if c["type"] == kind)


def fn_task(sandbox, task: dict[str, Any]):
    return sandbox.fn_state.tasks[task["status"]["taskId"]]


def submissions_for(sandbox, namespace: str, name: str) -> list:
    """FN tasks created for one Task, found by the marker in their description."""
    return [task for task in sandbox.fn_state.submissions
            if f"namespace={namespace} task={name} " in (task.description or "")]


def cancel_on_fn(stack, task_id: int) -> None:
    """Cancel as the researcher would, through the FN's API with her own token."""
    settings = Settings.from_env(stack.env())
    keycloak = Keycloak.from_settings(settings)
    fn = FNClient(settings.fn_url)
    try:
        token = keycloak.fn_token_for(keycloak.find_user(email="alice@example.org"))
        fn.cancel(token, task_id)
    finally:
        keycloak.close()
        fn.close()


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
