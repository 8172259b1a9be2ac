"""One reconcile step against the stand-ins, with Tasks written by hand (no API server).

These are the cases a Task made through the webhook cannot easily reach: no
status at all, an FN task that vanished or belongs to another Task, a spec
that no longer passes the checks, a phase skipped between two runs.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from poller import download
from poller.__main__ import build_reconciler
from poller.reconcile import Reconciler, needs_work, span, task_id_of
from standins.clock import ManualClock
from standins.fn_state import ANALYTICS_IMAGE, ImageBehaviour
from taskcore.settings import Settings
from taskcore.status import get_condition
from taskcore.submission import Deadline, Outcome
from taskcore.task import ADMISSION_UID_ANNOTATION, TASK_ID_ANNOTATION, Marker, review_spec
from tests.conftest import task_manifest

CLUSTER = "unit"
NAMESPACE = "unit-tests"


@pytest.fixture
def clock() -> ManualClock:
    """The reconciler's time: it starts at real time, as Keycloak and GitHub expect."""
    return ManualClock()


@pytest.fixture
def reconciler(sandbox, clock) -> Reconciler:
    settings = Settings.from_env({**sandbox.env(), "FNTC_CLUSTER_NAME": CLUSTER,
                                  "FNTC_SUBMIT_BACKOFF_BASE": "30"})
    made = build_reconciler(settings, now=clock.now)
    yield made
    made.close()


def hand_made_task(name: str, *, status: dict[str, Any] | None = None,
                   task_id: int | None = None, **spec: Any) -> dict[str, Any]:
    """A Task as the API server would hand it over, with an admission uid."""
    task = task_manifest(name, NAMESPACE, **spec)
    uid = str(uuid.uuid4())
    annotations = {ADMISSION_UID_ANNOTATION: uid}
    if task_id is not None:
        annotations[TASK_ID_ANNOTATION] = str(task_id)
    task["metadata"].update(uid=str(uuid.uuid4()), generation=1, resourceVersion="1",
                            annotations=annotations)
    if status is not None:
        task["status"] = status
    return task


def submit_to_fn(reconciler: Reconciler, task: dict[str, Any]) -> int:
    """Create the Task's FN task as the webhook would have, at admission."""
    meta = task["metadata"]
    uid = meta["annotations"][ADMISSION_UID_ANNOTATION]
    marker = Marker(CLUSTER, NAMESPACE, meta["name"], uid)
    spec = review_spec(meta["name"], task["spec"]).spec
    submission = reconciler.submitter.submit(spec, marker, deadline=Deadline(10))
    assert submission.outcome is Outcome.SUBMITTED
    meta["annotations"][TASK_ID_ANNOTATION] = str(submission.task_id)
    return submission.task_id


@pytest.mark.parametrize(("seconds", "said"), [
    (1, "1 second"), (45, "45 seconds"), (60, "1 minute"), (90, "1.5 minutes"),
    (3600, "1 hour"), (6 * 3600, "6 hours"), (86400 * 2, "2 days"),
])
def test_spans_read_as_a_person_says_them(seconds, said):
    assert span(seconds) == said


def test_which_tasks_need_work():
    assert needs_work({"status": {}})
    assert needs_work({"status": {"phase": "Running"}})
    assert needs_work({"status": {"phase": "Succeeded", "results": {"state": "Retrying"}}})
    assert not needs_work({"status": {"phase": "Succeeded", "results": {"state": "Delivered"}}})
    assert not needs_work({"status": {"phase": "Failed"}})
    assert not needs_work({"status": {"phase": "Cancelled"}})


def test_the_task_id_comes_from_status_else_the_annotation():
    assert task_id_of({"metadata": {}, "status": {"taskId": 4}}) == 4
    assert task_id_of({"metadata": {"annotations": {TASK_ID_ANNOTATION: "7"}}}) == 7
    assert task_id_of({"metadata": {"annotations": {TASK_ID_ANNOTATION: "seven"}}}) is None
    assert task_id_of({"metadata": {}}) is None


def test_a_task_without_status_is_caught_up_with_an_event(reconciler, sandbox):
    task = hand_made_task("caught-up")
    task_id = submit_to_fn(reconciler, task)
    step = reconciler.reconcile(task)
    assert (step.status["phase"], step.status["reason"], step.status["taskId"]) == \
        ("Submitted", "Scheduled", task_id)
    assert [reason for reason, _, _ in step.events] == ["Submitted", "Scheduled"]
    assert get_condition(step.status, "Submitted")["status"] == "True"


def test_a_phase_skipped_between_runs_still_tells_the_whole_story(reconciler, sandbox):
    task = hand_made_task("skipper")
    task_id = submit_to_fn(reconciler, task)
    task["status"] = {"phase": "Submitted", "taskId": task_id, "reason": "Submitted"}
    sandbox.clock.advance(10)
    step = reconciler.reconcile(task)
    assert step.status["phase"] == "Succeeded"
    assert step.status["results"]["state"] == "Delivered"
    assert [(c["type"], c["status"], c["reason"]) for c in step.status["conditions"]] == [
        ("Running", "False", "Completed"), ("Succeeded", "True", "Completed"),
        ("ResultsDelivered", "True", "Delivered")]
    assert [reason for reason, _, _ in step.events] == ["Succeeded", "ResultsDelivered"]
    assert step.delivered


def test_an_fn_task_that_vanished_fails_the_task(reconciler):
    running = [{"type": "Running", "status": "True", "reason": "Running", "message": "",
                "lastTransitionTime": "2024-01-01T00:00:00Z"}]
    task = hand_made_task("vanished", task_id=987654,
                          status={"phase": "Running", "taskId": 987654, "reason": "Running",
                                  "conditions": running})
    step = reconciler.reconcile(task)
    assert (step.status["phase"], step.status["reason"]) == ("Failed", "NotFoundOnFN")
    assert [(c["type"], c["status"], c["reason"]) for c in step.status["conditions"]] == [
        ("Running", "False", "NotFoundOnFN"), ("Succeeded", "False", "NotFoundOnFN")]
    assert step.status["results"] == {"state": "NotApplicable"}
    assert step.events[-1][0] == "NotFoundOnFN" and step.events[-1][2] is True


def test_an_fn_task_made_for_another_task_is_never_reported_on(reconciler, sandbox):
    other = hand_made_task("someone-else")
    task_id = submit_to_fn(reconciler, other)
    sandbox.clock.advance(10)
    thief = hand_made_task("thief", task_id=task_id,
                           status={"phase": "Submitted", "taskId": task_id})
    step = reconciler.reconcile(thief)
    assert (step.status["phase"], step.status["reason"]) == ("Failed", "TaskMismatch")
    assert step.status["results"] == {"state": "NotApplicable"}
    assert not step.delivered


def test_a_spec_that_fails_the_checks_fails_without_asking_anyone(reconciler, sandbox):
    asked = len(sandbox.fn_state.requests)
    step = reconciler.reconcile(hand_made_task("bad-image", image="analytics",
                                               status={"phase": "Pending"}))
    assert (step.status["phase"], step.status["reason"]) == ("Failed", "InvalidSpec")
    assert "no registry" in step.status["message"]
    assert len(sandbox.fn_state.requests) == asked


def test_submission_is_due_only_without_an_fn_task_and_after_the_backoff(reconciler, clock):
    later = (clock.now() + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert reconciler.submission_due(hand_made_task("new", status={"phase": "Pending"}))
    waiting = {"phase": "Pending", "submission": {"attempts": 2, "nextAttemptAt": later}}
    assert not reconciler.submission_due(hand_made_task("backing-off", status=waiting))
    assert not reconciler.submission_due(hand_made_task("has-one", task_id=5))
    assert not reconciler.submission_due(hand_made_task("done", status={"phase": "Failed"}))
    assert not reconciler.submission_due(hand_made_task("bad", image="x", status={}))


def test_a_delivery_without_a_token_waits_and_says_why(reconciler, sandbox):
    status = {"phase": "Succeeded", "taskId": 1, "reason": "Completed",
              "results": {"state": "Retrying", "attempts": 1}}
    sandbox.keycloak_faults.add("POST", "/realms/FederatedNode/protocol/openid-connect/token",
                                503, body={"error": "unavailable"}, times=5)
    step = reconciler.reconcile(hand_made_task("tokenless", task_id=1, status=status))
    results = step.status["results"]
    assert (step.status["phase"], results["state"], results["attempts"]) == \
        ("Succeeded", "Retrying", 2)
    assert "no FN token for alice@example.org" in results["message"]
    assert get_condition(step.status, "ResultsDelivered")["reason"] == "Retrying"


@pytest.mark.parametrize(("attempts", "delay"), [
    (0, 30), (1, 60), (5, 960), (6, 1800), (20, 1800),
])
def test_deferred_submission_backs_off_doubling_up_to_a_cap(reconciler, sandbox, clock,
                                                           attempts, delay):
    status = {"phase": "Pending", "reason": "FNUnavailable",
              "submission": {"attempts": attempts}}
    sandbox.fn_faults.add("POST", "/tasks/validate", 503, body={"error": "down"})
    step = reconciler.reconcile(hand_made_task("patient", status=status))
    submission = step.status["submission"]
    assert submission["attempts"] == attempts + 1
    assert submission["nextAttemptAt"] == \
        (clock.now() + timedelta(seconds=delay)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "503" in submission["lastError"]
    assert (step.status["phase"], step.events) == ("Pending", [])   # said once, before


def test_the_first_deferral_is_told_with_a_warning(reconciler, sandbox):
    sandbox.fn_faults.add("POST", "/tasks/validate", 503, body={"error": "down"})
    step = reconciler.reconcile(hand_made_task("first-time", status={}))
    assert step.status["reason"] == "FNUnavailable"
    assert [(reason, warning) for reason, _, warning in step.events] == \
        [("SubmissionDeferred", True)]
    assert get_condition(step.status, "Submitted")["status"] == "False"


def test_a_deferred_task_the_fn_refuses_fails_and_says_why(reconciler, sandbox):
    before = len(sandbox.fn_state.submissions)
    step = reconciler.reconcile(hand_made_task(
        "no-such-tag", image="ghcr.io/fntc-sandbox/analytics:9.9",
        status={"phase": "Pending", "reason": "FNUnavailable"}))
    assert (step.status["phase"], step.status["reason"]) == ("Failed", "SubmissionRefused")
    assert "9.9" in step.status["message"]
    assert step.events[-1][0] == "SubmissionRefused"
    assert len(sandbox.fn_state.submissions) == before


@pytest.fixture
def reconciler_with(sandbox, clock):
    """A reconciler with settings of its own, as after the operators changed them."""
    made: list[Reconciler] = []

    def build(**settings: str) -> Reconciler:
        env = {**sandbox.env(), "FNTC_CLUSTER_NAME": CLUSTER, **settings}
        made.append(build_reconciler(Settings.from_env(env), now=clock.now))
        return made[-1]
    yield build
    for each in made:
        each.close()


def submitted(reconciler: Reconciler, name: str, **spec: Any) -> dict[str, Any]:
    """A Task whose FN task exists, as the webhook left it."""
    task = hand_made_task(name, **spec)
    task_id = submit_to_fn(reconciler, task)
    task["status"] = {"phase": "Submitted", "taskId": task_id, "reason": "Submitted",
                      "message": f"Submitted to the FN as task {task_id}."}
    return task


def test_renaming_the_cluster_keeps_following_its_tasks(reconciler, reconciler_with):
    task = submitted(reconciler, "renamed")
    step = reconciler_with(FNTC_CLUSTER_NAME="renamed-cluster").reconcile(task)
    assert (step.status["phase"], step.status["reason"]) == ("Submitted", "Scheduled")


@pytest.mark.parametrize("description", [None, "", "an FN task made by hand"])
def test_an_fn_task_without_a_marker_is_never_followed(reconciler, sandbox, monkeypatch,
                                                       description):
    task = submitted(reconciler, "forged")
    monkeypatch.setattr(sandbox.fn_state.tasks[task["status"]["taskId"]], "description",
                        description)
    sandbox.clock.advance(10)
    step = reconciler.reconcile(task)
    assert (step.status["phase"], step.status["reason"]) == ("Failed", "TaskMismatch")
    assert not step.delivered and step.status["results"] == {"state": "NotApplicable"}


def test_a_registry_allow_list_set_later_spares_submitted_tasks(reconciler, reconciler_with):
    task = submitted(reconciler, "admitted-earlier")
    strict = reconciler_with(FNTC_ALLOWED_REGISTRIES="docker.io")
    step = strict.reconcile(task)
    assert (step.status["phase"], step.status["reason"]) == ("Submitted", "Scheduled")
    assert get_condition(step.status, "Synced") is None
    # A Task not submitted yet must pass today's checks before anything is made for it.
    pending = hand_made_task("admitted-deferred", status={"phase": "Pending"})
    assert not strict.submission_due(pending)
    step = strict.reconcile(pending)
    assert (step.status["phase"], step.status["reason"]) == ("Failed", "InvalidSpec")
    assert "ghcr.io" in step.status["message"]


def test_a_submitted_task_failing_a_tightened_check_is_followed_to_its_results(reconciler,
                                                                              sandbox):
    task = submitted(reconciler, "older-rules")
    task["spec"]["image"] = "analytics:1.0"     # no registry: refused by today's checks
    task["spec"]["command"] = "python run.py"   # a list today
    sandbox.clock.advance(10)
    step = reconciler.reconcile(task)
    assert (step.status["phase"], step.status["results"]["state"]) == \
        ("Succeeded", "Delivered")


def test_a_submitted_task_whose_researcher_cannot_be_read_is_marked_not_failed(reconciler):
    task = submitted(reconciler, "nobody")
    del task["spec"]["user"]
    step = reconciler.reconcile(task)
    assert (step.status["phase"], step.status["reason"]) == ("Submitted", "Submitted")
    synced = get_condition(step.status, "Synced")
    assert (synced["status"], synced["reason"]) == ("False", "SpecUnreadable")
    assert "spec.user" in synced["message"]
    assert step.events == [("SpecUnreadable", synced["message"], True)]
    # Said once: the same Task in the next run changes nothing.
    again = reconciler.reconcile({**task, "status": step.status})
    assert (again.status, again.events) == (step.status, [])


def test_a_dataset_the_fn_swapped_is_told_once(reconciler, sandbox):
    task = submitted(reconciler, "other-dataset", dataset=2)    # project1 grants dataset 1
    step = reconciler.reconcile(task)
    said = ("The FN runs it on dataset 1, the one project project1 grants, not on dataset 2 "
            "named in the Task.")
    assert step.status["datasetId"] == 1
    assert step.status["message"].endswith(said)
    assert [(reason, warning) for reason, _, warning in step.events] == \
        [("DatasetMismatch", True), ("Scheduled", False)]
    sandbox.clock.advance(3)
    running = reconciler.reconcile({**task, "status": step.status})
    assert running.status["phase"] == "Running" and running.status["message"].endswith(said)
    assert [reason for reason, _, _ in running.events] == ["Running"]


def test_a_matching_dataset_is_recorded_without_a_word(reconciler):
    step = reconciler.reconcile(submitted(reconciler, "same-dataset"))
    assert step.status["datasetId"] == 1
    assert "dataset" not in step.status["message"]
    assert [reason for reason, _, _ in step.events] == ["Scheduled"]


def test_a_deferred_task_submitted_by_the_poller_reads_as_the_webhook_says_it(reconciler):
    step = reconciler.reconcile(hand_made_task("late", status={"phase": "Pending"}))
    assert step.status["message"] == f"Submitted to the FN as task {step.status['taskId']}."


@pytest.fixture
def slip_image(sandbox, monkeypatch) -> str:
    """An image whose results climb out of their folder."""
    tags = sandbox.fn_state.images[ANALYTICS_IMAGE]
    monkeypatch.setitem(tags, "slip", ImageBehaviour(results={"../evil.sh": b"rm -rf /"}))
    return f"{ANALYTICS_IMAGE}:slip"


def test_an_archive_that_can_never_be_delivered_settles(reconciler, sandbox, slip_image):
    task = submitted(reconciler, "slipped", image=slip_image)
    sandbox.clock.advance(10)
    step = reconciler.reconcile(task)
    results = step.status["results"]
    assert (step.status["phase"], results["state"]) == ("Succeeded", "Undeliverable")
    assert "climbs out" in results["message"]
    assert get_condition(step.status, "ResultsDelivered")["reason"] == "Undeliverable"
    assert step.events[-1][0] == "ResultsUndeliverable" and step.events[-1][2]
    assert not needs_work({"status": step.status})


def test_an_archive_over_the_download_cap_settles_without_being_read_whole(
        reconciler, reconciler_with, sandbox, monkeypatch):
    task = submitted(reconciler, "bulky")
    monkeypatch.setattr(download, "RESULTS_MAX_BYTES", 100)
    capped = reconciler_with()
    sandbox.clock.advance(10)
    step = capped.reconcile(task)
    assert step.status["results"]["state"] == "Undeliverable"
    assert "larger than 100 bytes" in step.status["results"]["message"]


def test_results_of_an_fn_task_made_for_another_task_are_never_delivered(reconciler,
                                                                          sandbox):
    other = submitted(reconciler, "someone-elses")
    sandbox.clock.advance(10)
    status = {"phase": "Succeeded", "reason": "Completed", "taskId": other["status"]["taskId"],
              "results": {"state": "Retrying", "attempts": 1}}
    branches = sandbox.github_state.repository("fntc-sandbox/cancer-study").refs.copy()
    step = reconciler.reconcile(hand_made_task("finished-earlier", status=status))
    results = step.status["results"]
    assert results["state"] == "Undeliverable" and not step.delivered
    assert "was not made for this Task" in results["message"]
    assert step.events[-1][:1] + step.events[-1][2:] == ("ResultsUndeliverable", True)
    assert sandbox.github_state.repository("fntc-sandbox/cancer-study").refs == branches
