"""Conditions that tell a person a Task needs attention: Stuck and Synced.

``Stuck`` is True while a Task has stayed in one unfinished phase longer
than ``FNTC_STUCK_AFTER``. ``Synced`` is False while the poller cannot follow
the Task (the FN or Keycloak refuses, the spec can no longer be read), with
the reason as its message; it is written when that reason first appears or
changes, never on every run, and turns True once a run gets through again.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from taskcore.phases import Phase, now_rfc3339, parse_rfc3339
from taskcore.status import STUCK, SYNCED, current_phase, get_condition, set_condition

if TYPE_CHECKING:
    from .reconcile import Step


def span(seconds: float) -> str:
    """A length of time as a person says it: 45 seconds, 1.5 minutes, 6 hours."""
    unit, count = "second", float(seconds)
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            unit, count = name, round(seconds / size, 1)
            break
    text = f"{count:g}"
    return f"{text} {unit}" + ("" if text == "1" else "s")


def check_stuck(step: "Step", *, generation: int | None, stuck_after: float,
                now: datetime) -> None:
    status = step.status
    phase = current_phase(status)
    since = parse_rfc3339(status.get("phaseSince"))
    if phase.final or since is None:
        if get_condition(status, STUCK) and phase.final:
            status["conditions"] = [c for c in status["conditions"] if c["type"] != STUCK]
        return
    stuck = (now - since).total_seconds() > stuck_after
    existing = get_condition(status, STUCK)
    if not stuck:
        if existing and existing.get("status") == "True":
            status["conditions"] = set_condition(
                status["conditions"], STUCK, False, reason="Progressing",
                message=f"The Task moved on to {phase.value}.", generation=generation,
                now=now_rfc3339(now))
        return
    if existing and existing.get("status") == "True":
        return
    hint = {
        Phase.PENDING: "the FN could not be reached to submit it",
        Phase.SUBMITTED: ("its container has not started; the image may not be pullable "
                          "on the FN" if status.get("reason") not in
                          ("Submitted", "Scheduled")
                          else "the FN has not started it"),
        Phase.RUNNING: "the analysis is still running",
    }[phase]
    message = f"The Task has been {phase.value} for over {span(stuck_after)}: {hint}."
    status["conditions"] = set_condition(status.get("conditions") or [], STUCK, True,
                                         reason=f"Stuck{phase.value}", message=message,
                                         generation=generation, now=now_rfc3339(now))
    step.event("Stuck", message, True)


def mark_unsynced(step: "Step", *, reason: str, message: str, warning: bool,
                  generation: int | None, now: datetime) -> None:
    """Say why the poller cannot follow the Task, once per reason; ``warning`` also
    records a Warning Event, for a reason a person has to act on."""
    existing = get_condition(step.status, SYNCED)
    if existing and (existing.get("status"), existing.get("reason"),
                     existing.get("message")) == ("False", reason, message):
        return
    step.status["conditions"] = set_condition(step.status.get("conditions") or [], SYNCED,
                                              False, reason=reason, message=message,
                                              generation=generation, now=now_rfc3339(now))
    if warning:
        step.event(reason, message, True)


def mark_synced(step: "Step", *, generation: int | None, now: datetime) -> None:
    """A run got through: a Synced condition left False by an earlier run turns True."""
    existing = get_condition(step.status, SYNCED)
    if existing is None or existing.get("status") == "True":
        return
    message = "The poller follows this Task again."
    step.status["conditions"] = set_condition(step.status["conditions"], SYNCED, True,
                                              reason="Synced", message=message,
                                              generation=generation, now=now_rfc3339(now))
    step.event("Synced", message)
