"""Building a Task's status: phase, conditions and the timestamps around them.

Conditions follow Kubernetes' conventions: one entry per type, and
``lastTransitionTime`` moves only when the condition's status does.
"""

from __future__ import annotations

import copy
from typing import Any

from .phases import Phase, now_rfc3339

SUBMITTED = "Submitted"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
RESULTS_DELIVERED = "ResultsDelivered"
STUCK = "Stuck"
#: False while the poller cannot follow the Task (the FN or Keycloak refuses, the spec
#: can no longer be read); the message says why. Absent until that first happens.
SYNCED = "Synced"

CONDITION_ORDER = (SUBMITTED, RUNNING, SUCCEEDED, RESULTS_DELIVERED, STUCK, SYNCED)

#: Status field a poller run writes (with a resourceVersion precondition) before it
#: asks the FN to create a deferred Task's FN task: ``{"holder": run, "at": time}``.
#: Of two runs working at once only one can take it, so only one submits.
SUBMISSION_CLAIM = "submissionClaim"


def set_condition(conditions: list[dict[str, Any]], kind: str, status: bool | str, *,
                  reason: str, message: str, generation: int | None,
                  now: str | None = None) -> list[dict[str, Any]]:
    """A copy of ``conditions`` with ``kind`` set; untouched when nothing differs."""
    value = status if isinstance(status, str) else ("True" if status else "False")
    result = [dict(condition) for condition in conditions]
    for condition in result:
        if condition.get("type") != kind:
            continue
        if condition.get("status") != value:
            condition["lastTransitionTime"] = now or now_rfc3339()
        condition.update(status=value, reason=reason, message=message)
        if generation is not None:
            condition["observedGeneration"] = generation
        return result
    entry = {"type": kind, "status": value, "reason": reason, "message": message,
             "lastTransitionTime": now or now_rfc3339()}
    if generation is not None:
        entry["observedGeneration"] = generation
    result.append(entry)
    result.sort(key=lambda item: CONDITION_ORDER.index(item["type"])
                if item.get("type") in CONDITION_ORDER else len(CONDITION_ORDER))
    return result


def get_condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def current_phase(status: dict[str, Any]) -> Phase:
    try:
        return Phase(status.get("phase") or Phase.PENDING.value)
    except ValueError:
        return Phase.PENDING


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``before`` into ``after``.

    Empty when they are equal, so nothing is written. A merge patch merges
    nested objects, so a key that ``after`` no longer holds inside an object
    (the review message once results are delivered) is sent as ``None`` to
    remove it; lists, conditions among them, are replaced as a whole.
    """
    patch: dict[str, Any] = {}
    for key in set(before) | set(after):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if key not in after:
            patch[key] = None
        elif isinstance(old, dict) and isinstance(new, dict):
            patch[key] = changes(old, new)
        else:
            patch[key] = copy.deepcopy(new)
    return patch


def submitted_status(status: dict[str, Any], *, task_id: int, generation: int | None,
                     message: str, now: str | None = None) -> dict[str, Any]:
    """The status of a Task whose FN task now exists."""
    now = now or now_rfc3339()
    after = dict(status)
    after.update(phase=Phase.SUBMITTED.value, taskId=task_id, reason="Submitted",
                 message=message, submittedAt=status.get("submittedAt") or now,
                 phaseSince=now)
    after.pop("submission", None)
    after["conditions"] = set_condition(status.get("conditions") or [], SUBMITTED, True,
                                        reason="Submitted", message=message,
                                        generation=generation, now=now)
    return after


def pending_status(status: dict[str, Any], *, reason: str, message: str,
                   generation: int | None, submission: dict[str, Any] | None = None,
                   now: str | None = None) -> dict[str, Any]:
    """The status of a Task that is not submitted yet, and why."""
    now = now or now_rfc3339()
    after = dict(status)
    after.update(phase=Phase.PENDING.value, reason=reason, message=message)
    after.setdefault("phaseSince", now)
    if submission is not None:
        after["submission"] = submission
    after["conditions"] = set_condition(status.get("conditions") or [], SUBMITTED, False,
                                        reason=reason, message=message,
                                        generation=generation, now=now)
    return after
