"""Forward only: odd, older or broken FN answers never move a Task, nor a finished one.

Answers the stand-in would not give by itself come from its task state (a
test replaces one FN task's status) or from faults injected in front of it.
"""

from __future__ import annotations

from typing import Any

from tests.integration.poller_helpers import (  # noqa: F401 - poll is a fixture
    condition, create, events, fn_task, poll, read, wait_for_first_status)


def fault_status(sandbox, task: dict[str, Any], status: Any, times: int = 1) -> None:
    """The next GETs of this FN task answer with ``status`` in an otherwise true body."""
    stored = fn_task(sandbox, task)
    body = {**stored.view(sandbox.clock.now()), "status": status}
    sandbox.fn_faults.add("GET", f"/tasks/{stored.id}", 200, body=body, times=times)


ODD_ANSWERS = {
    "older-scheduled": "scheduled",
    "older-waiting": "waiting",
    "older-waiting-object": {"waiting": {"reason": "ImagePullBackOff"}},
    "plain-completed": "completed",
    "plain-failed": "failed",
    "terminated-without-exit-code": {"terminated": {"reason": "Completed"}},
    "exit-code-as-text": {"terminated": {"exit_code": "1", "reason": "Error"}},
    "two-states": {"running": {}, "terminated": {"exit_code": 0}},
    "null": None,
    "unknown-state": {"exploded": True},
}


def test_odd_or_older_answers_never_move_a_running_task(stack, sandbox, kube_api, namespace,
                                                       poll, monkeypatch):
    for name in ODD_ANSWERS:
        create(kube_api, namespace, name)
    wait_for_first_status(kube_api, namespace, list(ODD_ANSWERS))
    sandbox.clock.advance(3)
    poll()
    before = {name: read(kube_api, namespace, name) for name in ODD_ANSWERS}
    assert {task["status"]["phase"] for task in before.values()} == {"Running"}
    told = {name: len(events(kube_api, namespace, name)) for name in ODD_ANSWERS}

    # Each FN task now answers with its own odd status, whatever the clock says.
    for name, answer in ODD_ANSWERS.items():
        monkeypatch.setattr(fn_task(sandbox, before[name]), "status",
                            lambda now, answer=answer: answer)
    summary = poll()
    assert (summary.seen, summary.changed, summary.errors) == (len(ODD_ANSWERS), 0, 0)
    for name, task in before.items():
        after = read(kube_api, namespace, name)
        assert after["metadata"]["resourceVersion"] == task["metadata"]["resourceVersion"], name
        assert len(events(kube_api, namespace, name)) == told[name], name


def test_broken_answers_count_as_errors_and_are_said_once(stack, sandbox, kube_api,
                                                         namespace, poll):
    create(kube_api, namespace, "broken")
    wait_for_first_status(kube_api, namespace, ["broken"])
    task = read(kube_api, namespace, "broken")
    told = events(kube_api, namespace, "broken")
    for status, body in ((200, "<html>gateway</html>"), (200, ["not", "an", "object"]),
                         (502, {"error": "Bad Gateway"})):
        sandbox.fn_faults.add("GET", f"/tasks/{task['status']['taskId']}", status, body=body,
                              times=2)
        summary = poll()
        assert (summary.changed, summary.errors) == (1, 1), body
        synced = condition(read(kube_api, namespace, "broken"), "Synced")
        assert (synced["status"], synced["reason"]) == ("False", "ReconcileError"), body
        assert synced["message"].startswith("This run could not follow the Task: the FN ")
        # The same trouble again is counted, not written again.
        again = poll()
        assert (again.changed, again.errors) == (0, 1), body
        assert sandbox.fn_faults.pending() == []
    after = read(kube_api, namespace, "broken")["status"]
    assert (after["phase"], after["reason"], after["message"]) == \
        (task["status"]["phase"], task["status"]["reason"], task["status"]["message"])
    # An FN that is unwell for a while is no Warning for the researcher to act on.
    assert events(kube_api, namespace, "broken") == told
    # The next run, with the FN well again, carries on.
    assert poll().changed == 1
    healed = read(kube_api, namespace, "broken")
    assert healed["status"]["reason"] == "Scheduled"
    assert (condition(healed, "Synced")["status"], condition(healed, "Synced")["reason"]) == \
        ("True", "Synced")


def test_a_finished_task_never_changes_whatever_the_fn_says(stack, sandbox, kube_api,
                                                           namespace, poll):
    create(kube_api, namespace, "done", repository="fntc-sandbox/not-installed")
    wait_for_first_status(kube_api, namespace, ["done"])
    sandbox.clock.advance(10)
    poll()
    task = read(kube_api, namespace, "done")
    assert task["status"]["phase"] == "Succeeded"
    assert task["status"]["results"]["state"] == "Retrying"    # still has work left

    fault_status(sandbox, task, "deleted", times=3)
    sandbox.fn_state.tasks[task["status"]["taskId"]].cancelled_at = sandbox.clock.now()
    poll()
    status = read(kube_api, namespace, "done")["status"]
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed")
    assert condition(read(kube_api, namespace, "done"), "Succeeded")["status"] == "True"
