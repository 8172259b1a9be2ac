"""Conditions, status builders and the merge patch that writes only what changed."""

from __future__ import annotations

import pytest

from taskcore.status import (RESULTS_DELIVERED, RUNNING, STUCK, SUBMITTED, SUCCEEDED, SYNCED,
                             changes, current_phase, get_condition, pending_status,
                             set_condition, submitted_status)
from taskcore.phases import Phase

T0, T1, T2 = "2024-05-01T10:00:00Z", "2024-05-01T10:01:00Z", "2024-05-01T10:02:00Z"


def apply_merge_patch(target, patch):
    """RFC 7386, as the API server applies a status merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def test_a_new_condition_carries_every_field():
    conditions = set_condition([], SUBMITTED, True, reason="Submitted", message="FN task 4.",
                               generation=3, now=T0)
    assert conditions == [{"type": SUBMITTED, "status": "True", "reason": "Submitted",
                           "message": "FN task 4.", "lastTransitionTime": T0,
                           "observedGeneration": 3}]


def test_transition_time_moves_only_when_the_status_does():
    first = set_condition([], RUNNING, True, reason="Running", message="a", generation=1,
                          now=T0)
    reworded = set_condition(first, RUNNING, True, reason="Running", message="b",
                             generation=2, now=T1)
    assert reworded[0]["lastTransitionTime"] == T0
    assert (reworded[0]["message"], reworded[0]["observedGeneration"]) == ("b", 2)
    flipped = set_condition(reworded, RUNNING, False, reason="Completed", message="c",
                            generation=2, now=T2)
    assert (flipped[0]["status"], flipped[0]["lastTransitionTime"]) == ("False", T2)
    assert first[0]["message"] == "a", "the input list must not be changed in place"


def test_setting_a_condition_to_what_it_is_changes_nothing():
    conditions = set_condition([], SUCCEEDED, True, reason="Completed", message="done",
                               generation=1, now=T0)
    again = set_condition(conditions, SUCCEEDED, True, reason="Completed", message="done",
                          generation=1, now=T2)
    assert again == conditions
    assert changes({"conditions": conditions}, {"conditions": again}) == {}


def test_conditions_keep_one_entry_per_type_in_story_order():
    conditions: list = []
    for kind in ("SomeoneElses", SYNCED, STUCK, RESULTS_DELIVERED, SUCCEEDED, RUNNING,
                 SUBMITTED, RUNNING):
        conditions = set_condition(conditions, kind, True, reason="R", message="",
                                   generation=1, now=T0)
    assert [c["type"] for c in conditions] == \
        [SUBMITTED, RUNNING, SUCCEEDED, RESULTS_DELIVERED, STUCK, SYNCED, "SomeoneElses"]


def test_equal_statuses_give_an_empty_patch():
    status = {"phase": "Running", "results": {"state": "Retrying", "attempts": 2},
              "conditions": [{"type": RUNNING, "status": "True"}]}
    assert changes(status, {**status, "results": dict(status["results"])}) == {}


def test_the_patch_holds_only_what_changed():
    before = {"phase": "Submitted", "reason": "Scheduled", "taskId": 7}
    after = {"phase": "Running", "reason": "Running", "taskId": 7, "startedAt": T0}
    assert changes(before, after) == {"phase": "Running", "reason": "Running",
                                      "startedAt": T0}


def test_a_removed_key_is_removed_by_the_patch():
    patch = changes({"phase": "Pending", "submission": {"attempts": 2}}, {"phase": "Pending"})
    assert patch == {"submission": None}


@pytest.mark.parametrize(("before", "after"), [
    pytest.param({"state": "PendingReview", "message": "waits for review"},
                 {"state": "Delivered", "branch": "b", "commit": "c"}, id="review-to-delivered"),
    pytest.param({"state": "Retrying", "attempts": 3, "nextAttemptAt": T1, "message": "m"},
                 {"state": "Delivered", "branch": "b"}, id="retrying-to-delivered"),
    pytest.param({"state": "Retrying", "attempts": 3, "nextAttemptAt": T1},
                 {"state": "Retrying", "attempts": 4, "nextAttemptAt": T2}, id="retry-again"),
])
def test_nested_objects_end_up_exactly_as_computed(before, after):
    # A merge patch merges nested objects, so keys the new value no longer has
    # must be removed explicitly, or a stale message would stay next to a new state.
    stored = {"phase": "Succeeded", "results": before}
    computed = {"phase": "Succeeded", "results": after}
    patch = changes(stored, computed)
    assert apply_merge_patch(stored, patch) == computed
    assert set(patch) == {"results"}


def test_conditions_are_replaced_as_a_whole():
    before = [{"type": RUNNING, "status": "True", "reason": "Running"}]
    after = set_condition(before, RUNNING, False, reason="Completed", message="",
                          generation=1, now=T0)
    patch = changes({"conditions": before}, {"conditions": after})
    assert patch == {"conditions": after}


def test_submitted_status_keeps_the_first_submission_time():
    first = submitted_status({}, task_id=5, generation=1, message="Submitted.", now=T0)
    assert (first["phase"], first["taskId"], first["submittedAt"], first["phaseSince"]) == \
        ("Submitted", 5, T0, T0)
    assert get_condition(first, SUBMITTED)["status"] == "True"
    again = submitted_status({**first, "submission": {"attempts": 2}}, task_id=5,
                             generation=1, message="Submitted.", now=T1)
    assert again["submittedAt"] == T0
    assert "submission" not in again


def test_pending_status_says_why_and_keeps_when_it_began():
    pending = pending_status({}, reason="FNUnavailable", message="FN down.", generation=1,
                             submission={"attempts": 1}, now=T0)
    assert (pending["phase"], pending["reason"], pending["phaseSince"]) == \
        ("Pending", "FNUnavailable", T0)
    condition = get_condition(pending, SUBMITTED)
    assert (condition["status"], condition["reason"]) == ("False", "FNUnavailable")
    later = pending_status(pending, reason="FNUnavailable", message="FN down.", generation=1,
                           submission={"attempts": 2}, now=T2)
    assert later["phaseSince"] == T0
    assert get_condition(later, SUBMITTED)["lastTransitionTime"] == T0


@pytest.mark.parametrize(("status", "phase"), [
    ({}, Phase.PENDING), ({"phase": "Running"}, Phase.RUNNING),
    ({"phase": "Exploded"}, Phase.PENDING), ({"phase": None}, Phase.PENDING),
])
def test_current_phase_reads_what_is_stored(status, phase):
    assert current_phase(status) is phase
