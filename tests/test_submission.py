"""Submission against the FN and Keycloak stand-ins: one FN task per Task, whatever
the cluster is called now, whatever a look-up or a token does at the wrong moment."""

from __future__ import annotations

import uuid

import pytest

from standins.sandbox import Sandbox
from taskcore.fn import FNClient, FNUnavailable
from taskcore.keycloak import Keycloak
from taskcore.settings import Settings
from taskcore.submission import Deadline, Outcome, Submitter
from taskcore.task import Marker, review_spec
from tests.conftest import task_manifest


class FlakyListing(FNClient):
    """The FN client, with the n-th task listing failing as an unreachable FN would."""

    def __init__(self, base_url: str, *, fail_on: int) -> None:
        super().__init__(base_url)
        self.fail_on = fail_on
        self.listings = 0

    def find(self, *args, **kwargs):
        self.listings += 1
        if self.listings == self.fail_on:
            raise FNUnavailable("the FN could not be reached while listing tasks")
        return super().find(*args, **kwargs)


def submitter_for(sandbox: Sandbox, fn: FNClient | None = None) -> Submitter:
    settings = Settings.from_env(sandbox.env())
    return Submitter(settings, keycloak=Keycloak.from_settings(settings),
                     fn=fn or FNClient(settings.fn_url))


def marker(cluster: str = "local", uid: str | None = None) -> Marker:
    return Marker(cluster, "research", f"study-{uuid.uuid4().hex[:8]}", uid or str(uuid.uuid4()))


def spec_of(name: str):
    return review_spec(name, task_manifest(name, "research")["spec"]).spec


def made_for(sandbox: Sandbox, task: Marker) -> list[int]:
    return [fn_task.id for fn_task in sandbox.fn_state.submissions
            if f"task={task.name} uid={task.uid}" in (fn_task.description or "")]


def test_a_renamed_cluster_adopts_the_fn_task_made_under_the_old_name(sandbox):
    submitter = submitter_for(sandbox)
    old = marker("before")
    first = submitter.submit(spec_of(old.name), old, deadline=Deadline(10))
    renamed = Marker("after", old.namespace, old.name, old.uid)
    again = submitter.submit(spec_of(old.name), renamed, deadline=Deadline(10))
    assert first.outcome is again.outcome is Outcome.SUBMITTED
    assert again.adopted and again.task_id == first.task_id
    assert made_for(sandbox, old) == [first.task_id]


def test_a_failed_check_for_twins_defers_instead_of_promising_the_new_task(sandbox):
    task = marker()
    flaky = FlakyListing(sandbox.fn_url, fail_on=2)      # 1: before create, 2: after
    result = submitter_for(sandbox, flaky).submit(spec_of(task.name), task,
                                                 deadline=Deadline(10))
    assert result.outcome is Outcome.DEFERRED and result.task_id is None
    created = made_for(sandbox, task)
    assert len(created) == 1 and str(created[0]) in result.message

    # The next attempt (the poller's) finds that task instead of making another.
    later = submitter_for(sandbox).submit(spec_of(task.name), task, deadline=Deadline(10))
    assert later.outcome is Outcome.SUBMITTED and later.adopted
    assert made_for(sandbox, task) == [later.task_id] == created


@pytest.mark.parametrize("refusals", [1, 2], ids=["once", "twice"])
def test_a_token_refused_at_create_after_validation_is_never_a_refusal(sandbox, refusals):
    task = marker()
    sandbox.fn_faults.add("POST", "/tasks/validate", 0)      # passes through untouched
    sandbox.fn_faults.add("POST", "/tasks", 401, {"error": "Token expired"}, times=refusals)
    result = submitter_for(sandbox).submit(spec_of(task.name), task, deadline=Deadline(10))
    if refusals == 1:
        assert result.outcome is Outcome.SUBMITTED
        assert made_for(sandbox, task) == [result.task_id]
    else:
        assert result.outcome is Outcome.DEFERRED
        assert "fresh token" in result.message
        assert made_for(sandbox, task) == []


def test_a_named_dataset_is_admitted_with_the_id_the_fn_runs_on(sandbox):
    task = marker()
    spec = review_spec(task.name, task_manifest(task.name, "research",
                                                dataset="hospital-admissions")["spec"]).spec
    result = submitter_for(sandbox).submit(spec, task, deadline=Deadline(10))
    assert result.outcome is Outcome.SUBMITTED
    assert result.warnings == ("the FN runs this task on dataset 1, the one project1 grants; "
                               "FNTC cannot check that it is the dataset named "
                               "'hospital-admissions'",)
