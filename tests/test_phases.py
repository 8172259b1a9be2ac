"""Every status shape the FN sends, and the forward-only rule between phases."""

from __future__ import annotations

import itertools

import pytest

from taskcore.phases import Phase, advance, observe

STARTED = "Mon, 01 Jan 2024 10:00:00 GMT"
FINISHED = "Mon, 01 Jan 2024 10:05:30 GMT"


def terminated(exit_code, reason="Completed", **extra) -> dict:
    return {"terminated": {"started_at": STARTED, "finished_at": FINISHED,
                           "exit_code": exit_code, "reason": reason, **extra}}


KNOWN_SHAPES = [
    pytest.param("scheduled", Phase.SUBMITTED, "Scheduled", id="scheduled"),
    pytest.param("waiting", Phase.SUBMITTED, "Waiting", id="waiting"),
    pytest.param({"waiting": {}}, Phase.SUBMITTED, "Waiting", id="waiting-object"),
    pytest.param({"waiting": {"reason": "ImagePullBackOff"}}, Phase.SUBMITTED,
                 "ImagePullBackOff", id="waiting-with-reason"),
    pytest.param({"running": {"started_at": STARTED}}, Phase.RUNNING, "Running", id="running"),
    pytest.param(terminated(0), Phase.SUCCEEDED, "Completed", id="terminated-0"),
    pytest.param(terminated(1, "Error"), Phase.FAILED, "Error", id="terminated-error"),
    pytest.param(terminated(137, "OOMKilled"), Phase.FAILED, "OOMKilled", id="oom-killed"),
    pytest.param(terminated(2, ""), Phase.FAILED, "Error", id="terminated-no-reason"),
    pytest.param("deleted", Phase.FAILED, "PodDeleted", id="deleted"),
    pytest.param("cancelled", Phase.CANCELLED, "Cancelled", id="cancelled"),
    pytest.param(" Cancelled\n", Phase.CANCELLED, "Cancelled", id="cancelled-untidy"),
]


@pytest.mark.parametrize(("status", "phase", "reason"), KNOWN_SHAPES)
def test_each_known_shape_maps_to_its_phase_and_reason(status, phase, reason):
    seen = observe(status)
    assert (seen.phase, seen.reason) == (phase, reason)
    assert seen.message and seen.message.endswith(".")


UNKNOWN_SHAPES = [
    pytest.param(None, id="null"),
    pytest.param("", id="empty-string"),
    pytest.param("completed", id="plain-completed"),
    pytest.param("failed", id="plain-failed"),
    pytest.param("running", id="plain-running"),
    pytest.param("Pending", id="pod-phase-word"),
    pytest.param({}, id="empty-object"),
    pytest.param({"exploded": {}}, id="unknown-state"),
    pytest.param({"running": {}, "terminated": {"exit_code": 0}}, id="two-states"),
    pytest.param({"terminated": {"reason": "Completed"}}, id="terminated-no-exit-code"),
    pytest.param({"terminated": {"exit_code": "0"}}, id="exit-code-as-text"),
    pytest.param({"terminated": {"exit_code": True}}, id="exit-code-as-bool"),
    pytest.param({"terminated": "done"}, id="terminated-not-object"),
    pytest.param(["running"], id="list"),
    pytest.param(0, id="number"),
]


@pytest.mark.parametrize("status", UNKNOWN_SHAPES)
def test_unknown_shapes_imply_no_phase(status):
    seen = observe(status)
    assert seen.phase is None
    assert seen.reason == "UnknownStatus"


def test_exit_reasons_are_explained_to_the_researcher():
    assert "memory" in observe(terminated(137, "OOMKilled")).message
    assert "code 1" in observe(terminated(1, "Error")).message
    # A reason FNTC does not know still names the exit code and where to look.
    odd = observe(terminated(3, "SomethingNew"))
    assert (odd.phase, odd.reason) == (Phase.FAILED, "SomethingNew")
    assert "code 3" in odd.message and "logs" in odd.message


@pytest.mark.parametrize(("code", "reason", "said"), [
    (1, "Error", "The analysis exited with code 1 (Error); its logs are on the FN: "
                 "GET /tasks/12/logs."),
    (2, "", "The analysis exited with code 2 (Error); its logs are on the FN: "
            "GET /tasks/12/logs."),
    (137, "OOMKilled", "The analysis exited with code 137 (OOMKilled); it ran out of "
                       "memory; ask for a larger memory limit in spec.resources."),
], ids=["error", "no-reason", "oom"])
def test_a_failure_is_said_once_and_points_at_the_logs(code, reason, said):
    seen = observe(terminated(code, reason), task_id=12)
    assert (seen.reason, seen.message) == (reason or "Error", said)
    assert observe(terminated(1, "Error")).message.endswith("its logs are on the FN.")


def test_a_waiting_reason_is_kept_when_the_fn_sends_one():
    seen = observe({"waiting": {"reason": "ErrImagePull", "message": "not found"}})
    assert seen.reason == "ErrImagePull"
    assert "image" in seen.message.lower()
    assert observe("waiting").message == observe({"waiting": {}}).message


def test_pod_times_become_rfc3339():
    seen = observe(terminated(0))
    assert (seen.started_at, seen.finished_at, seen.exit_code) == \
        ("2024-01-01T10:00:00Z", "2024-01-01T10:05:30Z", 0)
    assert observe({"running": {"started_at": STARTED}}).started_at == "2024-01-01T10:00:00Z"
    assert observe({"running": {"started_at": "yesterday"}}).started_at is None
    assert observe({"running": {"started_at": 1704103200}}).started_at is None


ALL = list(Phase)


@pytest.mark.parametrize(("current", "observed"), list(itertools.product(ALL, ALL + [None])),
                         ids=lambda value: getattr(value, "value", "unknown"))
def test_advance_only_moves_forward(current, observed):
    after = advance(current, observed)
    if current.final or observed is None:
        assert after is current
    elif observed.rank >= current.rank:
        assert after is observed
    else:
        assert after is current
    assert after.rank >= current.rank


def test_a_final_phase_is_never_replaced_by_another_final_phase():
    assert advance(Phase.SUCCEEDED, Phase.FAILED) is Phase.SUCCEEDED
    assert advance(Phase.FAILED, Phase.CANCELLED) is Phase.FAILED
    assert advance(Phase.CANCELLED, Phase.SUCCEEDED) is Phase.CANCELLED


def test_a_pending_task_can_jump_straight_to_an_end():
    assert advance(Phase.PENDING, Phase.SUCCEEDED) is Phase.SUCCEEDED
    assert advance(Phase.SUBMITTED, Phase.CANCELLED) is Phase.CANCELLED
