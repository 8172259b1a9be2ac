"""The orphan sweep: FN tasks no Task keeps are cancelled, and only those.

The Tasks a run lists are read again before any cancel, so a Task created or
given its FN task during the run keeps it; a second FN task made for one Task
(two webhook replicas racing) is cancelled; the sweep looks back only so far.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from poller.orphans import Candidate, find_candidates, unkept
from taskcore.task import ADMISSION_UID_ANNOTATION, TASK_ID_ANNOTATION, Marker
from tests.integration.poller_helpers import (  # noqa: F401 - poll is a fixture
    create, fn_task_behind_fntc, make_poller, poll, read, wait_for_first_status)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def fn_item(task_id: Any, marker: Marker, *, status: Any = "scheduled",
            created: datetime = NOW - timedelta(hours=1)) -> dict[str, Any]:
    return {"id": task_id, "description": str(marker), "status": status,
            "created_at": created.strftime("%Y-%m-%d %H:%M:%S")}


def stored_task(name: str, *, uid: str, task_id: int | None) -> dict[str, Any]:
    annotations = {ADMISSION_UID_ANNOTATION: uid}
    if task_id is not None:
        annotations[TASK_ID_ANNOTATION] = str(task_id)
    return {"metadata": {"namespace": "research", "name": name, "uid": "object-uid",
                         "annotations": annotations}}


def test_fn_list_items_of_an_unknown_shape_are_passed_over():
    marker = Marker("local", "research", "study", "uid-1")
    items = [fn_item(task_id, marker) for task_id in ("7", None, True, 2.5, [3])]
    items += [{"id": 8}, {"id": 9, "description": None}, {}, fn_item(10, marker)]
    found = find_candidates(items, [], cluster="local", namespaces=(), grace=0, now=NOW)
    assert found == [Candidate(10, marker)]


def test_only_unfinished_fn_tasks_of_this_cluster_past_the_grace_are_candidates():
    mine = Marker("local", "research", "study", "uid-1")
    items = [
        fn_item(1, mine),
        fn_item(2, Marker("elsewhere", "research", "study", "uid-2")),
        fn_item(3, Marker("local", "not-watched", "study", "uid-3")),
        fn_item(4, mine, status="cancelled"),
        fn_item(5, mine, status={"terminated": {"exit_code": 0}}),
        fn_item(6, mine, created=NOW - timedelta(seconds=30)),
        fn_item(7, mine),
    ]
    held = [stored_task("study", uid="uid-1", task_id=7)]
    found = find_candidates(items, held, cluster="local", namespaces=("research",),
                            grace=300, now=NOW)
    assert [candidate.task_id for candidate in found] == [1]


@pytest.mark.parametrize(("task", "verdict"), [
    pytest.param(None, "its Task does not exist", id="no-task"),
    pytest.param(stored_task("study", uid="uid-1", task_id=12), None, id="same-id"),
    pytest.param(stored_task("study", uid="another", task_id=12), None,
                 id="same-id-other-uid"),
    pytest.param(stored_task("study", uid="uid-1", task_id=None), None,
                 id="same-uid-will-adopt"),
    pytest.param(stored_task("study", uid="uid-1", task_id=11),
                 "a second FN task for its Task, which has FN task 11", id="twin"),
    pytest.param(stored_task("study", uid="another", task_id=None),
                 "its Task was deleted; a Task of the same name was made since",
                 id="made-again"),
])
def test_what_the_task_as_it_is_now_says_about_an_fn_task(task, verdict):
    candidate = Candidate(12, Marker("local", "research", "study", "uid-1"))
    assert unkept(candidate, task, "local") == verdict
    # The cluster name is a setting: renamed, it still recognises its Tasks.
    assert unkept(candidate, task, "renamed") == verdict


def sweep_clock(sandbox):
    """The FN stamps created_at with its own clock, which earlier tests moved ahead;
    the sweep counts the grace period from the later of the two clocks."""
    return lambda: max(datetime.now(timezone.utc), sandbox.clock.now())


def fn_state_of(sandbox, task_id: int) -> Any:
    return sandbox.fn_state.tasks[task_id].status(sandbox.clock.now())


def test_a_task_created_during_the_run_keeps_its_fn_task(stack, sandbox, kube_api,
                                                         namespace):
    poller = make_poller(stack, kube_api, namespace, now=sweep_clock(sandbox))
    listed = poller.tasks.iterate

    def iterate_then_create(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        tasks = list(listed(*args, **kwargs))
        create(kube_api, namespace, "latecomer")
        return tasks
    poller.tasks.iterate = iterate_then_create

    summary = poller.run()
    assert (summary.seen, summary.orphans_cancelled) == (0, 0)
    latecomer = read(kube_api, namespace, "latecomer")
    task_id = int(latecomer["metadata"]["annotations"][TASK_ID_ANNOTATION])
    assert fn_state_of(sandbox, task_id) != "cancelled"


def test_a_second_fn_task_for_one_task_is_cancelled(stack, sandbox, kube_api, namespace,
                                                    poll):
    create(kube_api, namespace, "twin")
    wait_for_first_status(kube_api, namespace, ["twin"])
    task = read(kube_api, namespace, "twin")
    marker = Marker("local", namespace, "twin",
                    task["metadata"]["annotations"][ADMISSION_UID_ANNOTATION])
    second = fn_task_behind_fntc(sandbox, marker)

    assert poll(now=sweep_clock(sandbox)).orphans_cancelled == 1
    assert fn_state_of(sandbox, second) == "cancelled"
    assert fn_state_of(sandbox, task["status"]["taskId"]) != "cancelled"
    assert read(kube_api, namespace, "twin")["status"]["taskId"] == task["status"]["taskId"]
    assert poll(now=sweep_clock(sandbox)).orphans_cancelled == 0


def test_the_sweep_looks_back_only_so_far(stack, sandbox, kube_api, namespace, poll):
    marker = Marker("local", namespace, "long-gone", str(uuid.uuid4()))
    forgotten = fn_task_behind_fntc(sandbox, marker)
    created = sandbox.fn_state.tasks[forgotten].created_at
    two_hours_on = created + timedelta(hours=2)

    assert poll(now=lambda: two_hours_on, FNTC_ORPHAN_LOOKBACK="3600").orphans_cancelled == 0
    assert fn_state_of(sandbox, forgotten) != "cancelled"
    assert poll(now=lambda: two_hours_on).orphans_cancelled == 1
    assert fn_state_of(sandbox, forgotten) == "cancelled"
