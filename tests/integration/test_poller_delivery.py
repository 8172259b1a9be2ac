"""Results from the FN to GitHub: review gate, expiry, an app not installed, no second commit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from kubernetes import client

from standins.clock import ManualClock
from taskcore.status import RESULTS_DELIVERED
from taskcore.task import GROUP, PLURAL, VERSION
from tests.integration.poller_helpers import (  # noqa: F401 - poll is a fixture
    Killed, condition, create, events, make_poller, poll, read, wait_for_first_status,
    wrap_status_writes)


def finished(sandbox, kube_api, namespace: str, *names: str, **spec: Any) -> None:
    """Tasks that ran to a successful end on the FN (the poller has not looked yet)."""
    for name in names:
        create(kube_api, namespace, name, **spec)
    wait_for_first_status(kube_api, namespace, list(names))
    sandbox.clock.advance(10)


def review(sandbox, task: dict[str, Any], decision: str) -> None:
    """A node administrator decides, through the stand-in's control endpoint."""
    answer = httpx.post(f"{sandbox.fn_url}/_standin/tasks/{task['status']['taskId']}/review",
                        json={"decision": decision})
    answer.raise_for_status()


def result_commits(sandbox, repository: str, branch: str) -> list[str]:
    return [message for message in sandbox.github_state.commits(repository, branch)
            if message.startswith("Results of Task")]


def test_results_wait_for_review_then_are_delivered_or_stay_blocked(stack, sandbox, kube_api,
                                                                   namespace, poll):
    sandbox.fn_state.review_enabled = True
    finished(sandbox, kube_api, namespace, "approved", "blocked")
    summary = poll()
    assert (summary.changed, summary.delivered) == (2, 0)
    for name in ("approved", "blocked"):
        task = read(kube_api, namespace, name)
        assert task["status"]["phase"] == "Succeeded"
        assert task["status"]["results"]["state"] == "PendingReview"
        waiting = condition(task, RESULTS_DELIVERED)
        assert (waiting["status"], waiting["reason"]) == ("False", "PendingReview")
        assert "review" in waiting["message"]
        assert events(kube_api, namespace, name)[-1] == ("ResultsPendingReview", "Normal")
    assert poll().changed == 0, "waiting for review is said once"

    review(sandbox, read(kube_api, namespace, "approved"), "approve")
    review(sandbox, read(kube_api, namespace, "blocked"), "block")
    summary = poll()
    assert (summary.changed, summary.delivered) == (2, 1)

    approved = read(kube_api, namespace, "approved")
    results = approved["status"]["results"]
    assert results["state"] == "Delivered" and "message" not in results
    assert results["commit"] == sandbox.github_state.head(results["repository"],
                                                          results["branch"])
    files = sandbox.github_state.branch_files(results["repository"], results["branch"])
    assert {"results/approved/summary.csv", "results/approved/report.md"} <= set(files)
    delivered = condition(approved, RESULTS_DELIVERED)
    assert (delivered["status"], delivered["reason"]) == ("True", "Delivered")
    assert events(kube_api, namespace, "approved")[-1] == ("ResultsDelivered", "Normal")

    blocked = read(kube_api, namespace, "blocked")
    assert blocked["status"]["results"]["state"] == "Blocked"
    refused = condition(blocked, RESULTS_DELIVERED)
    assert (refused["status"], refused["reason"]) == ("False", "Blocked")
    assert events(kube_api, namespace, "blocked")[-1] == ("ResultsBlocked", "Warning")

    # Both settled: a later run does not even ask the FN about them.
    asked = len(sandbox.fn_state.requests)
    summary = poll()
    assert (summary.seen, summary.skipped, summary.changed) == (2, 2, 0)
    assert not any(f"/tasks/{task['status']['taskId']}" in request.path
                   for request in sandbox.fn_state.requests[asked:]
                   for task in (approved, blocked))


def test_expired_results_are_said_plainly(stack, sandbox, kube_api, namespace, poll,
                                          monkeypatch):
    monkeypatch.setattr(sandbox.fn_state, "results_ttl", timedelta(seconds=5))
    finished(sandbox, kube_api, namespace, "stale")
    poll()
    task = read(kube_api, namespace, "stale")
    assert (task["status"]["phase"], task["status"]["results"]["state"]) == \
        ("Succeeded", "Expired")
    assert "run the Task again" in task["status"]["results"]["message"]
    assert condition(task, RESULTS_DELIVERED)["reason"] == "Expired"
    assert events(kube_api, namespace, "stale")[-1] == ("ResultsExpired", "Warning")
    assert poll().skipped == 1


@pytest.fixture
def app_installed_later(sandbox):
    yield lambda: sandbox.github_state.set_installed("fntc-sandbox/not-installed", True)
    sandbox.github_state.set_installed("fntc-sandbox/not-installed", False)


def test_an_app_not_installed_is_retried_with_backoff_and_says_why(stack, sandbox, kube_api,
                                                                 namespace, poll,
                                                                 app_installed_later):
    backoff = {"FNTC_SUBMIT_BACKOFF_BASE": "5"}
    clock = ManualClock()   # the poller's time; a few seconds ahead at most, as GitHub allows
    finished(sandbox, kube_api, namespace, "homeless", repository="fntc-sandbox/not-installed")
    poll(now=clock.now, **backoff)
    first = read(kube_api, namespace, "homeless")["status"]
    assert first["phase"] == "Succeeded"
    assert (first["results"]["state"], first["results"]["attempts"]) == ("Retrying", 1)
    assert "not installed on fntc-sandbox/not-installed" in first["results"]["message"]
    waiting = condition(read(kube_api, namespace, "homeless"), RESULTS_DELIVERED)
    assert (waiting["status"], waiting["reason"]) == ("False", "Retrying")
    assert first["results"]["nextAttemptAt"] == \
        (clock.now() + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert poll(now=clock.now, **backoff).changed == 0, "no new attempt before the backoff ends"
    clock.advance(6)
    poll(now=clock.now, **backoff)
    second = read(kube_api, namespace, "homeless")["status"]["results"]
    assert second["attempts"] == 2
    assert second["nextAttemptAt"] == \
        (clock.now() + timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [reason for reason, _ in events(kube_api, namespace, "homeless")].count(
        "ResultsDeliveryFailed") == 1

    app_installed_later()
    clock.advance(11)
    summary = poll(now=clock.now, **backoff)
    assert summary.delivered == 1
    results = read(kube_api, namespace, "homeless")["status"]["results"]
    assert results["state"] == "Delivered"
    assert not {"attempts", "nextAttemptAt", "message"} & set(results)


def test_a_rerun_after_a_lost_status_write_commits_nothing_new(stack, sandbox, kube_api,
                                                              namespace, poll):
    finished(sandbox, kube_api, namespace, "once")
    poller = make_poller(stack, kube_api, namespace)

    def die_after_delivery(task: dict[str, Any], patch: dict[str, Any]) -> None:
        if (patch.get("results") or {}).get("state") == "Delivered":
            raise Killed()
    wrap_status_writes(poller, die_after_delivery)
    with pytest.raises(Killed):
        poller.run()
    task_id = read(kube_api, namespace, "once")["status"]["taskId"]
    branch = f"fntc/results/{namespace}/once-fn{task_id}"
    head = sandbox.github_state.head("fntc-sandbox/cancer-study", branch)
    assert len(result_commits(sandbox, "fntc-sandbox/cancer-study", branch)) == 1
    assert read(kube_api, namespace, "once")["status"]["phase"] == "Submitted"

    summary = poll()
    assert summary.delivered == 1
    results = read(kube_api, namespace, "once")["status"]["results"]
    assert (results["state"], results["commit"], results["branch"]) == \
        ("Delivered", head, branch)
    assert sandbox.github_state.head("fntc-sandbox/cancer-study", branch) == head
    assert len(result_commits(sandbox, "fntc-sandbox/cancer-study", branch)) == 1
    assert [reason for reason, _ in events(kube_api, namespace, "once")].count(
        "ResultsDelivered") == 1


def test_a_task_made_again_under_its_name_delivers_to_a_branch_of_its_own(
        stack, sandbox, kube_api, namespace, poll):
    # The study's main branch holds results of an earlier run someone merged.
    repository = f"fntc-sandbox/rerun-{namespace[-8:]}"
    sandbox.github_state.add_repository(repository, files={
        "README.md": b"# A study\n", "results/rerun/merged-earlier.csv": b"old,1\n"})
    delivered = []
    for _ in range(2):
        finished(sandbox, kube_api, namespace, "rerun", repository=repository)
        assert poll().delivered == 1
        task = read(kube_api, namespace, "rerun")
        delivered.append((task["status"]["taskId"], task["status"]["results"]))
        client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "rerun")

    (first_id, first), (second_id, second) = delivered
    assert first_id != second_id
    prefix = f"fntc/results/{namespace}/rerun-fn"
    assert (first["branch"], second["branch"]) == (f"{prefix}{first_id}", f"{prefix}{second_id}")
    for results in (first, second):
        files = sandbox.github_state.branch_files(repository, results["branch"])
        assert {path for path in files if path.startswith("results/rerun/")} == \
            {"results/rerun/summary.csv", "results/rerun/report.md"}
        assert "README.md" in files
        assert len(result_commits(sandbox, repository, results["branch"])) == 1


def test_a_missing_base_branch_is_said_where_the_results_landed(stack, sandbox, kube_api,
                                                                namespace, poll):
    finished(sandbox, kube_api, namespace, "typo", branch="mian")
    poll()
    task = read(kube_api, namespace, "typo")
    assert task["status"]["results"]["state"] == "Delivered"
    delivered = condition(task, RESULTS_DELIVERED)
    assert "Branch 'mian' does not exist there" in delivered["message"]
    assert "starts from 'main'" in delivered["message"]
