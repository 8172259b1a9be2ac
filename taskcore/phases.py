"""From what the FN says about a task to the phase a person sees.

The FN reads a task's status live from its pod and answers in several
shapes (a plain word, or an object keyed by the container state). Phases
only move forward: an answer that would move a Task backwards, or that we
do not understand, leaves the phase as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any


class Phase(str, Enum):
    PENDING = "Pending"
    SUBMITTED = "Submitted"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def final(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Phase.PENDING: 0, Phase.SUBMITTED: 1, Phase.RUNNING: 2,
         Phase.SUCCEEDED: 3, Phase.FAILED: 3, Phase.CANCELLED: 3}

#: Exit reasons the FN passes through from Kubernetes, with what they mean to a researcher.
#: Any other reason (``Error`` above all) points at the task's logs.
_EXIT_REASONS = {
    "OOMKilled": "it ran out of memory; ask for a larger memory limit in spec.resources",
    "DeadlineExceeded": "it ran longer than the FN allows",
    "ContainerCannotRun": "its container could not start; check the image's entry point",
    "Evicted": "the FN's node evicted it; run the Task again",
}


@dataclass(frozen=True)
class Observation:
    """One reading of an FN task: the phase it implies, and why, in words."""

    phase: Phase | None
    reason: str
    message: str
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None


def _timestamp(value: Any) -> str | None:
    """The FN's RFC 1123 pod times, as RFC 3339 for Kubernetes status."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def observe(status: Any, *, task_id: int | None = None) -> Observation:
    """Map any status shape the FN sends; unknown shapes give ``phase=None``.

    With ``task_id`` a failure's message says where the task's logs are.
    """
    if isinstance(status, str):
        word = status.strip().lower()
        if word == "scheduled":
            return Observation(Phase.SUBMITTED, "Scheduled",
                               "The FN accepted the task and is about to start it.")
        if word == "waiting":
            return Observation(Phase.SUBMITTED, "Waiting",
                               "The task's container is waiting to start; if this lasts, "
                               "the image may not be pullable on the FN.")
        if word == "deleted":
            return Observation(Phase.FAILED, "PodDeleted",
                               "The task's pod disappeared while it ran (node lost or "
                               "evicted); run the Task again.")
        if word == "cancelled":
            return Observation(Phase.CANCELLED, "Cancelled", "The task was cancelled on the FN.")
        return Observation(None, "UnknownStatus", f"The FN reported an unknown status {status!r}.")

    if isinstance(status, dict) and len(status) == 1:
        (state, details), = status.items()
        details = details if isinstance(details, dict) else {}
        started = _timestamp(details.get("started_at"))
        if state == "running":
            return Observation(Phase.RUNNING, "Running", "The analysis is running on the FN.",
                               started_at=started)
        if state == "terminated":
            code = details.get("exit_code")
            reason = str(details.get("reason") or "")
            finished = _timestamp(details.get("finished_at"))
            if isinstance(code, bool) or not isinstance(code, int):
                return Observation(None, "UnknownStatus",
                                   "The FN says the task ended but gives no exit code.")
            if code == 0:
                return Observation(Phase.SUCCEEDED, "Completed",
                                   "The analysis finished successfully.", 0, started, finished)
            reason = reason or "Error"
            logs = ("its logs are on the FN" if task_id is None else
                    f"its logs are on the FN: GET /tasks/{task_id}/logs")
            explanation = _EXIT_REASONS.get(reason, logs)
            return Observation(Phase.FAILED, reason,
                               f"The analysis exited with code {code} ({reason}); "
                               f"{explanation}.", code, started, finished)
        if state == "waiting":
            # The FN drops the waiting reason today; should it ever pass one on
            # (ImagePullBackOff, ErrImagePull...), it is the most useful word to show.
            reason = details.get("reason")
            if not isinstance(reason, str) or not reason.strip():
                return observe("waiting")
            reason = reason.strip()
            hint = (" check that the image can be pulled on the FN."
                    if "image" in reason.lower() or "pull" in reason.lower() else
                    " read the task's logs on the FN.")
            return Observation(Phase.SUBMITTED, reason,
                               f"The task's container is waiting to start ({reason});{hint}")
    return Observation(None, "UnknownStatus", "The FN reported a status shape FNTC does not know.")


def advance(current: Phase, observed: Phase | None) -> Phase:
    """The phase after an observation: forward only, and a final phase never changes."""
    if observed is None or current.final:
        return current
    return observed if observed.rank >= current.rank else current


def now_rfc3339(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: Any) -> datetime | None:
    """A time this module wrote with :func:`now_rfc3339`; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
