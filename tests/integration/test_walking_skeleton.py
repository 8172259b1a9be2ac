"""A Task from kubectl to the FN and back, through the real API server."""

from __future__ import annotations

import json

from tests.conftest import task_manifest


def _task(stack, namespace: str, name: str) -> dict:
    out = stack.plane.kubectl("get", "task", name, "-n", namespace, "-o", "json").stdout
    return json.loads(out)


def _fn_tasks_for(sandbox, namespace: str) -> list:
    return [task for task in sandbox.fn_state.tasks.values()
            if f"namespace={namespace} " in (task.description or "")]


def test_task_is_submitted_followed_and_delivered(stack, sandbox, namespace, run_poller):
    result = stack.apply(task_manifest("summary", namespace))
    assert result.returncode == 0, result.stderr

    task = _task(stack, namespace, "summary")
    fn_tasks = _fn_tasks_for(sandbox, namespace)
    assert len(fn_tasks) == 1
    assert task["metadata"]["annotations"]["tasks.federatednode.com/task-id"] == \
        str(fn_tasks[0].id)

    run_poller()
    assert _task(stack, namespace, "summary")["status"]["phase"] in ("Submitted",)
    sandbox.clock.advance(3)
    run_poller()
    assert _task(stack, namespace, "summary")["status"]["phase"] == "Running"
    sandbox.clock.advance(10)
    run_poller()
    status = _task(stack, namespace, "summary")["status"]
    assert status["phase"] == "Succeeded"
    assert status["results"]["state"] == "Delivered", status["results"]
    files = sandbox.github_state.branch_files("fntc-sandbox/cancer-study",
                                              status["results"]["branch"])
    assert any(path.endswith("summary.csv") for path in files)

    table = stack.plane.kubectl("get", "tasks", "-n", namespace).stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "PHASE", "FN"]
    assert row.split()[:3] == ["summary", "Succeeded", str(fn_tasks[0].id)]


def test_unknown_user_is_refused_and_nothing_is_submitted(stack, sandbox, namespace):
    result = stack.apply(task_manifest("stranger", namespace,
                                       user={"email": "mallory@example.org"}))
    assert result.returncode != 0
    assert "no Keycloak user mallory@example.org" in result.stderr
    assert _fn_tasks_for(sandbox, namespace) == []
