"""How a run paces itself: stuck Tasks over time, tokens and concurrency under load."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

from standins.clock import ManualClock
from tests.integration.poller_helpers import (  # noqa: F401 - poll is a fixture
    create, events, make_poller, poll, read, wait_for_first_status)

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def stuck(task: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in task["status"].get("conditions", []) if c["type"] == "Stuck"),
                None)


def test_a_task_too_long_in_one_phase_is_marked_stuck(stack, sandbox, kube_api, namespace,
                                                     poll):
    clock = ManualClock()       # the poller's own time, moved on without waiting
    settings = {"FNTC_STUCK_AFTER": "60"}
    create(kube_api, namespace, "pull", image="ghcr.io/fntc-sandbox/analytics:pull-error")
    create(kube_api, namespace, "slow", image="ghcr.io/fntc-sandbox/analytics:crash")
    wait_for_first_status(kube_api, namespace, ["pull", "slow"])
    poll(now=clock.now, **settings)
    sandbox.clock.advance(3)
    create(kube_api, namespace, "late", image="ghcr.io/fntc-sandbox/analytics:crash")
    wait_for_first_status(kube_api, namespace, ["late"])
    poll(now=clock.now, **settings)
    assert all(stuck(read(kube_api, namespace, name)) is None
               for name in ("pull", "slow", "late"))

    # The webhook stamped the first phases with the wall clock: start from there.
    clock.set(datetime.now(timezone.utc))
    clock.advance(61)
    summary = poll(now=clock.now, **settings)
    assert summary.changed == 3
    expected = {"pull": ("StuckSubmitted", "image may not be pullable"),
                "late": ("StuckSubmitted", "the FN has not started it"),
                "slow": ("StuckRunning", "still running")}
    for name, (reason, hint) in expected.items():
        task = read(kube_api, namespace, name)
        entry = stuck(task)
        assert (entry["status"], entry["reason"]) == ("True", reason), name
        assert "over 1 minute" in entry["message"] and hint in entry["message"], entry
        assert entry["observedGeneration"] == task["metadata"]["generation"]
        assert events(kube_api, namespace, name)[-1] == ("Stuck", "Warning")

    # Said once: a rerun neither writes nor repeats the Event.
    told = {name: len(events(kube_api, namespace, name)) for name in expected}
    assert poll(now=clock.now, **settings).changed == 0
    assert {name: len(events(kube_api, namespace, name)) for name in expected} == told

    # Moving on clears it; finishing removes it.
    sandbox.clock.advance(3)
    poll(now=clock.now, **settings)
    late = read(kube_api, namespace, "late")
    assert late["status"]["phase"] == "Running"
    assert (stuck(late)["status"], stuck(late)["reason"]) == ("False", "Progressing")
    assert stuck(read(kube_api, namespace, "pull"))["status"] == "True"
    sandbox.clock.advance(2)
    poll(now=clock.now, **settings)
    slow = read(kube_api, namespace, "slow")
    assert slow["status"]["phase"] == "Failed" and stuck(slow) is None


def exchanges(sandbox) -> int:
    with sandbox.keycloak_state.lock:
        return sum(request.grant_type == EXCHANGE for request in sandbox.keycloak_state.requests)


def test_one_token_exchange_per_researcher_per_run(stack, sandbox, kube_api, namespace, poll):
    bob = {"user": {"email": "bob@example.org"}, "project": "project2", "dataset": 2,
           "repository": "fntc-sandbox/admissions-study"}
    names = [f"alice-{index}" for index in range(4)] + ["bob-0", "bob-1"]
    for name in names:
        create(kube_api, namespace, name, **(bob if name.startswith("bob") else {}))
    wait_for_first_status(kube_api, namespace, names)

    for _ in range(2):
        before = exchanges(sandbox)
        summary = poll(FNTC_CONCURRENCY="6")
        assert summary.errors == 0
        assert exchanges(sandbox) - before == 2
    assert {read(kube_api, namespace, name)["status"]["reason"] for name in names} == \
        {"Scheduled"}


def test_the_fn_is_asked_with_bounded_concurrency(stack, sandbox, kube_api, namespace):
    names = [f"t{index}" for index in range(6)]
    for name in names:
        create(kube_api, namespace, name)
    wait_for_first_status(kube_api, namespace, names)
    poller = make_poller(stack, kube_api, namespace, FNTC_CONCURRENCY="2")
    in_flight, most = 0, 0
    lock = threading.Lock()
    real = poller.reconciler.fn.get

    def get(*args: Any, **kwargs: Any):
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            time.sleep(0.2)     # long enough for the other workers to overlap
            return real(*args, **kwargs)
        finally:
            with lock:
                in_flight -= 1
    poller.reconciler.fn.get = get
    summary = poller.run()
    assert (summary.changed, summary.errors) == (6, 0)
    assert most == 2
