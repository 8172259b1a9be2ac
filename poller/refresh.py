"""What one reading of an FN task changes in its Task's status.

Before anything is taken from an FN task, its description must hold the
marker of the Task that points at it: FNTC writes one on every FN task it
makes, so an FN task without it, or with another Task's, is never reported
on or delivered (a ``status.taskId`` copied or forged to point at someone
else's FN task). The phase then only moves forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskcore.phases import Observation, Phase, advance
from taskcore.status import RUNNING, SUCCEEDED, current_phase, set_condition
from taskcore.task import Marker, TaskSpec

if TYPE_CHECKING:
    from .reconcile import Step

_FINAL_EVENTS = {Phase.SUCCEEDED: False, Phase.FAILED: True, Phase.CANCELLED: True}
#: Reasons of an unfinished Task that are part of a normal life, not a warning.
_ORDINARY_REASONS = ("Submitted", "Scheduled", "Waiting", "Running")


def made_for(fn_task: dict[str, Any], marker: Marker) -> bool:
    """Whether the FN task was made for the Task with ``marker``: same namespace, name
    and admission uid. The cluster name is left out: it is a setting, and renaming it
    must not disown every FN task made before."""
    found = Marker.parse(fn_task.get("description"))
    return found is not None and found.names_same_task(marker)


def fn_dataset(fn_task: dict[str, Any]) -> int | None:
    value = fn_task.get("dataset_id")
    return None if isinstance(value, bool) or not isinstance(value, int) else value


def dataset_note(spec: TaskSpec, actual: int | None) -> str | None:
    """A sentence when the FN runs the task on another dataset than the Task names.

    A researcher's FN task runs on the dataset their project grants, whatever the
    Task says. Only ids can be compared: the FN shows no dataset names.
    """
    if actual is None or spec.dataset_id is None or actual == spec.dataset_id:
        return None
    return (f"The FN runs it on dataset {actual}, the one project {spec.project} grants, "
            f"not on dataset {spec.dataset_id} named in the Task.")


def apply_observation(step: "Step", seen: Observation, *, task_id: int,
                      generation: int | None, now: str) -> None:
    """Move ``step.status`` forward to what ``seen`` says, with the Events to record."""
    status = step.status
    before = current_phase(status)
    after = advance(before, seen.phase)
    if seen.phase is None or after is not seen.phase:
        # Not understood, or behind what the Task already shows (a lagging read on
        # the FN's side): the Task keeps its phase, reason and message as they are.
        return
    if after is before and status.get("reason") == seen.reason:
        return
    new = dict(status)
    if after is not before:
        new["phaseSince"] = now
    new.update(phase=after.value, reason=seen.reason, message=seen.message)
    if seen.started_at:
        new["startedAt"] = seen.started_at
    if seen.finished_at:
        new["finishedAt"] = seen.finished_at
    if seen.exit_code is not None:
        new["exitCode"] = seen.exit_code
    conditions = new.get("conditions") or []
    if after is Phase.RUNNING or after.final:
        # Every ending, a cancel included, leaves Running false with its reason.
        conditions = set_condition(conditions, RUNNING, after is Phase.RUNNING,
                                   reason=seen.reason if after.final else "Running",
                                   message=seen.message, generation=generation, now=now)
    if after.final:
        conditions = set_condition(conditions, SUCCEEDED, after is Phase.SUCCEEDED,
                                   reason=seen.reason, message=seen.message,
                                   generation=generation, now=now)
        if after is not Phase.SUCCEEDED:
            new["results"] = {"state": "NotApplicable"}
    new["conditions"] = conditions
    step.status = new
    message = f"FN task {task_id}: {seen.message}"
    if after is not before:
        step.event(after.value if after is not Phase.FAILED else seen.reason, message,
                   _FINAL_EVENTS.get(after, False))
    else:
        step.event(seen.reason, message, seen.reason not in _ORDINARY_REASONS)
