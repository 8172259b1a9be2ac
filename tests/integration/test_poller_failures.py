"""Runs that meet trouble: Tasks deleted mid-run, write conflicts, a run killed half way.

Every conflict here is a real 409 from the API server: the test changes the
Task between the poller's read and its write, and the write's resourceVersion
precondition does the rest. A killed run is a BaseException thrown from the
status write, which nothing in the poller catches, as with a SIGKILL.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from kubernetes import client

from poller.__main__ import build_reconciler
from taskcore.kube import Conflict, TaskStore
from taskcore.settings import Settings
from taskcore.status import SUBMISSION_CLAIM
from taskcore.submission import Deadline
from taskcore.task import GROUP, PLURAL, VERSION, Marker, review_spec
from tests.conftest import task_manifest
from tests.integration.poller_helpers import (  # noqa: F401 - poll is a fixture
    Killed, create, create_deferred, events, fn_task, make_poller, poll, poller_env, read,
    submissions_for, wait_for_first_status, wrap_status_writes)


def delete(kube_api, namespace: str, name: str) -> None:
    client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)


def exists(kube_api, namespace: str, name: str) -> bool:
    return TaskStore(kube_api).get(namespace, name) is not None


def label(kube_api, namespace: str, name: str, value: str) -> None:
    """Another writer touches the Task: its resourceVersion moves on."""
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"labels": {"touched": value}}})


def test_tasks_deleted_mid_run(stack, sandbox, kube_api, namespace):
    create(kube_api, namespace, "submitted")
    wait_for_first_status(kube_api, namespace, ["submitted"])
    create_deferred(sandbox, kube_api, namespace, "deferred")
    create_deferred(sandbox, kube_api, namespace, "unclaimed")
    poller = make_poller(stack, kube_api, namespace)

    listed = poller.tasks.iterate

    def iterate_then_delete(*args: Any, **kwargs: Any):
        tasks = list(listed(*args, **kwargs))
        delete(kube_api, namespace, "submitted")
        delete(kube_api, namespace, "unclaimed")
        return tasks
    poller.tasks.iterate = iterate_then_delete

    def delete_after_submission(task: dict[str, Any], patch: dict[str, Any]) -> None:
        if task["metadata"]["name"] == "deferred" and "taskId" in patch:
            delete(kube_api, namespace, "deferred")
    wrap_status_writes(poller, delete_after_submission)

    summary = poller.run()
    assert (summary.seen, summary.changed, summary.errors) == (3, 0, 0)
    assert not any(exists(kube_api, namespace, name)
                   for name in ("submitted", "deferred", "unclaimed"))
    # The FN task made for a Task that vanished meanwhile is cancelled at once.
    made = submissions_for(sandbox, namespace, "deferred")
    assert len(made) == 1
    assert made[0].status(sandbox.clock.now()) == "cancelled"
    assert (made[0].id, 201) in sandbox.fn_state.cancels
    # A Task deleted before its claim was written is never submitted.
    assert submissions_for(sandbox, namespace, "unclaimed") == []


def test_a_conflicting_write_is_retried_on_the_fresh_task(stack, sandbox, kube_api, namespace):
    create(kube_api, namespace, "busy")
    wait_for_first_status(kube_api, namespace, ["busy"])
    poller = make_poller(stack, kube_api, namespace)
    conflicts: list[Conflict] = []
    real = poller.tasks.patch_status

    def patch_status(task: dict[str, Any], patch: dict[str, Any], **kwargs: Any):
        if not conflicts:
            label(kube_api, namespace, "busy", "once")
        try:
            return real(task, patch, **kwargs)
        except Conflict as error:
            conflicts.append(error)
            raise
    poller.tasks.patch_status = patch_status

    summary = poller.run()
    assert len(conflicts) == 1 and conflicts[0].status == 409
    assert (summary.changed, summary.errors) == (1, 0)
    task = read(kube_api, namespace, "busy")
    assert task["metadata"]["labels"] == {"touched": "once"}
    assert (task["status"]["phase"], task["status"]["reason"]) == ("Submitted", "Scheduled")
    assert events(kube_api, namespace, "busy") == [("Submitted", "Normal"),
                                                  ("Scheduled", "Normal")]


def test_endless_conflicts_leave_the_task_for_the_next_run(stack, sandbox, kube_api,
                                                          namespace, poll):
    create(kube_api, namespace, "contested")
    wait_for_first_status(kube_api, namespace, ["contested"])
    before = read(kube_api, namespace, "contested")
    poller = make_poller(stack, kube_api, namespace)
    touches = iter(range(100))
    wrap_status_writes(poller, lambda task, patch: label(kube_api, namespace, "contested",
                                                        str(next(touches))))
    summary = poller.run()
    assert (summary.changed, summary.errors) == (0, 1)
    assert next(touches) == 3, "one write and two retries, each met by a conflict"
    assert read(kube_api, namespace, "contested")["status"] == before["status"]
    assert len(events(kube_api, namespace, "contested")) == 1

    assert poll().changed == 1
    assert read(kube_api, namespace, "contested")["status"]["reason"] == "Scheduled"


def test_a_run_killed_between_the_fn_answer_and_the_status_write(stack, sandbox, kube_api,
                                                                 namespace, poll):
    create_deferred(sandbox, kube_api, namespace, "deferred")
    create(kube_api, namespace, "admitted")
    wait_for_first_status(kube_api, namespace, ["admitted"])
    admitted = read(kube_api, namespace, "admitted")
    poller = make_poller(stack, kube_api, namespace)

    def die_after_the_fn_answered(task: dict[str, Any], patch: dict[str, Any]) -> None:
        if "taskId" in patch or patch.get("reason") == "Scheduled":
            raise Killed()
    wrap_status_writes(poller, die_after_the_fn_answered)
    try:
        poller.run()
    except Killed:
        pass
    else:
        raise AssertionError("the run was not killed")

    # The FN created the deferred Task's FN task; Kubernetes never heard of it.
    made = submissions_for(sandbox, namespace, "deferred")
    assert len(made) == 1
    pending = read(kube_api, namespace, "deferred")
    assert pending["status"]["phase"] == "Pending"
    assert pending["status"][SUBMISSION_CLAIM]["holder"] == poller.identity
    assert read(kube_api, namespace, "admitted")["status"] == admitted["status"]

    # Straight after, the dead run's claim still holds: the deferred Task waits.
    poll()
    assert read(kube_api, namespace, "deferred")["metadata"]["resourceVersion"] == \
        pending["metadata"]["resourceVersion"]
    assert read(kube_api, namespace, "admitted")["status"]["reason"] == "Scheduled"

    # Once the claim is stale, the next run adopts the FN task instead of making another.
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    summary = poll(now=lambda: later)
    assert (summary.changed, summary.submitted, summary.errors) == (1, 0, 0)
    status = read(kube_api, namespace, "deferred")["status"]
    assert (status["phase"], status["taskId"]) == ("Submitted", made[0].id)
    assert SUBMISSION_CLAIM not in status
    assert "Adopted" in status["message"]
    assert events(kube_api, namespace, "deferred")[-1] == ("Adopted", "Normal")
    assert len(submissions_for(sandbox, namespace, "deferred")) == 1
    assert len(submissions_for(sandbox, namespace, "admitted")) == 1

    sandbox.clock.advance(10)
    poll()
    status = read(kube_api, namespace, "deferred")["status"]
    assert (status["phase"], status["results"]["state"]) == ("Succeeded", "Delivered")
    assert fn_task(sandbox, read(kube_api, namespace, "deferred")).id == made[0].id


def test_one_bad_task_never_stops_the_others(stack, sandbox, kube_api, namespace, poll,
                                            monkeypatch):
    create(kube_api, namespace, "good")
    create(kube_api, namespace, "fn-fails")
    create(kube_api, namespace, "fn-garbles")
    create(kube_api, namespace, "user-gone", user={"email": "carol@example.org"})
    create(kube_api, namespace, "also-good")
    names = ["good", "fn-fails", "fn-garbles", "user-gone", "also-good"]
    wait_for_first_status(kube_api, namespace, names)
    before = {name: read(kube_api, namespace, name) for name in names}
    sandbox.fn_faults.add("GET", f"/tasks/{before['fn-fails']['status']['taskId']}", 500,
                          body={"error": "Internal Error"})
    sandbox.fn_faults.add("GET", f"/tasks/{before['fn-garbles']['status']['taskId']}", 200,
                          body="<html>not json</html>")
    carol = next(user for user in sandbox.keycloak_state.users
                 if user.email == "carol@example.org")
    monkeypatch.setattr(carol, "enabled", False)

    summary = poll(FNTC_CONCURRENCY="1")
    assert (summary.seen, summary.changed, summary.errors) == (5, 5, 3)
    for name in ("good", "also-good"):
        assert read(kube_api, namespace, name)["status"]["reason"] == "Scheduled"
    for name in ("fn-fails", "fn-garbles", "user-gone"):
        status = read(kube_api, namespace, name)["status"]
        assert (status["phase"], status["reason"], status["message"]) == \
            ("Submitted", "Submitted", before[name]["status"]["message"]), name
        synced = next(c for c in status["conditions"] if c["type"] == "Synced")
        assert (synced["status"], synced["reason"]) == ("False", "ReconcileError"), name
    assert "carol@example.org" in next(
        c for c in read(kube_api, namespace, "user-gone")["status"]["conditions"]
        if c["type"] == "Synced")["message"]
    # A researcher who cannot be acted for is told with a Warning, once; an unwell FN is not.
    assert events(kube_api, namespace, "user-gone")[-1] == ("ReconcileError", "Warning")
    assert events(kube_api, namespace, "fn-fails") == [("Submitted", "Normal")]

    # The same trouble on the next run is counted again, and written nowhere.
    sandbox.fn_faults.add("GET", f"/tasks/{before['fn-fails']['status']['taskId']}", 500,
                          body={"error": "Internal Error"})
    sandbox.fn_faults.add("GET", f"/tasks/{before['fn-garbles']['status']['taskId']}", 200,
                          body="<html>not json</html>")
    summary = poll(FNTC_CONCURRENCY="1")
    assert (summary.changed, summary.errors) == (0, 3)
    assert len(events(kube_api, namespace, "user-gone")) == 2


def test_a_task_that_keeps_failing_still_gets_its_stuck_check(stack, sandbox, kube_api,
                                                            namespace, poll, monkeypatch):
    create(kube_api, namespace, "locked-out", user={"email": "carol@example.org"})
    wait_for_first_status(kube_api, namespace, ["locked-out"])
    carol = next(user for user in sandbox.keycloak_state.users
                 if user.email == "carol@example.org")
    monkeypatch.setattr(carol, "enabled", False)
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    assert poll(now=lambda: later, FNTC_STUCK_AFTER="3600").errors == 1
    task = read(kube_api, namespace, "locked-out")
    conditions = {c["type"]: (c["status"], c["reason"]) for c in task["status"]["conditions"]}
    assert conditions["Synced"] == ("False", "ReconcileError")
    assert conditions["Stuck"] == ("True", "StuckSubmitted")


def test_fn_tasks_whose_task_never_was_stored_are_cancelled(stack, sandbox, kube_api,
                                                           namespace, poll):
    """As when the API server refuses a Task after the webhook submitted it."""
    reconciler = build_reconciler(Settings.from_env(poller_env(stack, namespace)))
    spec = review_spec("ghost", task_manifest("ghost", namespace)["spec"]).spec
    made = {}
    try:
        for label_, marker in {
            "ghost": Marker("local", namespace, "ghost", str(uuid.uuid4())),
            "other-cluster": Marker("elsewhere", namespace, "ghost", str(uuid.uuid4())),
            "other-namespace": Marker("local", "not-watched", "ghost", str(uuid.uuid4())),
        }.items():
            made[label_] = reconciler.submitter.submit(spec, marker,
                                                       deadline=Deadline(10)).task_id
    finally:
        reconciler.close()
    create(kube_api, namespace, "alive")
    wait_for_first_status(kube_api, namespace, ["alive"])

    # The FN stamps created_at with its own clock, which earlier tests moved ahead;
    # the grace period is counted from the later of the two clocks.
    summary = poll(now=lambda: max(datetime.now(timezone.utc), sandbox.clock.now()))
    assert summary.orphans_cancelled == 1
    now = sandbox.clock.now()
    states = {label_: sandbox.fn_state.tasks[task_id].status(now)
              for label_, task_id in made.items()}
    assert states == {"ghost": "cancelled", "other-cluster": "scheduled",
                      "other-namespace": "scheduled"}
    alive = read(kube_api, namespace, "alive")["status"]["taskId"]
    assert sandbox.fn_state.tasks[alive].status(now) == "scheduled"
    assert poll().orphans_cancelled == 0
