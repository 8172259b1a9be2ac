"""One step forward for one Task.

Reads what the Task's status says, asks the FN (or submits, for a Task that
was deferred at admission), and returns the new status and the Events to
record. Nothing here writes to Kubernetes; :mod:`poller.run` does, once, and
only when something changed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from taskcore.errors import ServiceError
from taskcore.fn import FNClient, FNRejected
from taskcore.keycloak import Keycloak
from taskcore.phases import Phase, advance, now_rfc3339, observe
from taskcore.settings import Settings
from taskcore.status import (RUNNING, STUCK, SUBMISSION_CLAIM, SUCCEEDED, current_phase,
                             get_condition, pending_status, set_condition, submitted_status)
from taskcore.submission import Deadline, Outcome, Submitter
from taskcore.task import ADMISSION_UID_ANNOTATION, TASK_ID_ANNOTATION, Marker, review_spec

from .delivery import Deliverer, results_settled

log = logging.getLogger(__name__)

_FINAL_EVENTS = {Phase.SUCCEEDED: False, Phase.FAILED: True, Phase.CANCELLED: True}
#: Reasons of an unfinished Task that are part of a normal life, not a warning.
_ORDINARY_REASONS = ("Submitted", "Scheduled", "Waiting", "Running")


@dataclass
class Step:
    """What one reconcile decided: the status to write and the Events to record."""

    status: dict[str, Any]
    events: list[tuple[str, str, bool]] = field(default_factory=list)  # reason, message, warn
    submitted: bool = False
    delivered: bool = False

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append((reason, message, warning))


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def span(seconds: float) -> str:
    """A length of time as a person says it: 45 seconds, 1.5 minutes, 6 hours."""
    unit, count = "second", float(seconds)
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            unit, count = name, round(seconds / size, 1)
            break
    text = f"{count:g}"
    return f"{text} {unit}" + ("" if text == "1" else "s")


def marker_of(task: dict[str, Any], cluster: str) -> Marker:
    meta = task["metadata"]
    annotations = meta.get("annotations") or {}
    # A Task admitted by FNTC carries its admission uid; one that predates the
    # webhook is marked with its own object uid instead.
    uid = annotations.get(ADMISSION_UID_ANNOTATION) or meta.get("uid", "")
    return Marker(cluster, meta["namespace"], meta["name"], uid)


def task_id_of(task: dict[str, Any]) -> int | None:
    value = (task.get("status") or {}).get("taskId")
    if value is None:
        value = ((task["metadata"].get("annotations") or {}).get(TASK_ID_ANNOTATION))
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def needs_work(task: dict[str, Any]) -> bool:
    """False for a Task that is finished for good: no FN call is needed for it."""
    status = task.get("status") or {}
    phase = current_phase(status)
    return not (phase.final and results_settled(phase, status))


class Reconciler:
    def __init__(self, settings: Settings, *, keycloak: Keycloak, fn: FNClient,
                 deliverer: Deliverer | None, now=lambda: datetime.now(timezone.utc)) -> None:
        self.settings = settings
        self.keycloak = keycloak
        self.fn = fn
        self.submitter = Submitter(settings, keycloak=keycloak, fn=fn)
        self.deliverer = deliverer
        self.now = now
        self._tokens: dict[tuple[str, str, str], str] = {}
        self._user_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._users_lock = threading.Lock()

    def close(self) -> None:
        """Close the outside clients' connections."""
        self.keycloak.close()
        self.fn.close()
        if self.deliverer is not None:
            self.deliverer.github.close()

    def user_token(self, spec) -> str:
        """The researcher's FN token, looked up once per run and user.

        One thread per researcher asks Keycloak while the others wait for its
        answer, so however many Tasks a researcher has and however many run
        at once, a run exchanges one token for them.
        """
        key = (spec.email, spec.username, spec.github_id)
        with self._users_lock:
            lock = self._user_locks.setdefault(key, threading.Lock())
        with lock:
            token = self._tokens.get(key)
            if token is None:
                user = self.submitter.identify(spec, Deadline(self.settings.request_timeout))
                token = self.keycloak.fn_token_for(user)
                self._tokens[key] = token
        return token

    def submission_due(self, task: dict[str, Any]) -> bool:
        """True when reconciling ``task`` now would ask the FN to create its FN task."""
        status = task.get("status") or {}
        if current_phase(status).final or task_id_of(task) is not None:
            return False
        meta = task["metadata"]
        if review_spec(meta["name"], task.get("spec"),
                       allowed_registries=self.settings.allowed_registries).spec is None:
            return False
        due = parse_time((status.get("submission") or {}).get("nextAttemptAt"))
        return not (due and due > self.now())

    def reconcile(self, task: dict[str, Any]) -> Step:
        status = dict(task.get("status") or {})
        meta = task["metadata"]
        generation = meta.get("generation")
        step = Step(status)
        spec_review = review_spec(meta["name"], task.get("spec"),
                                  allowed_registries=self.settings.allowed_registries)
        phase = current_phase(status)
        if spec_review.spec is None:
            if not phase.final:
                message = "The Task cannot run: " + "; ".join(spec_review.problems)
                step.status = self._final(status, Phase.FAILED, "InvalidSpec", message,
                                          generation)
                step.event("InvalidSpec", message, True)
            return step
        spec = spec_review.spec
        marker = marker_of(task, self.settings.cluster_name)

        task_id = task_id_of(task)
        if task_id is None and not phase.final:
            self._submit(step, spec, marker, generation)
            # The claim this run took to submit is settled by whatever came of it.
            step.status.pop(SUBMISSION_CLAIM, None)
        elif task_id is not None and not phase.final:
            if status.get("taskId") != task_id:
                message = f"Submitted to the FN as task {task_id}."
                step.status = submitted_status(status, task_id=task_id, generation=generation,
                                               message=message, now=now_rfc3339(self.now()))
                step.event("Submitted", message)
            self._refresh(step, spec, task_id, marker, generation)

        phase = current_phase(step.status)
        if phase is Phase.SUCCEEDED and self.deliverer is not None \
                and not results_settled(phase, step.status) and self.deliverer.due(step):
            self._deliver(step, task, spec, marker)
        self._check_stuck(step, generation)
        return step

    def _deliver(self, step: Step, task: dict[str, Any], spec, marker: Marker) -> None:
        assert self.deliverer is not None
        try:
            token = self.user_token(spec)
        except ServiceError as error:
            # The phase this run learnt is still written; only the delivery waits.
            self.deliverer.postpone(step, task, marker,
                                    f"no FN token for {spec.requester}: {error}")
            return
        self.deliverer.deliver(step, task, spec, marker, token=token,
                               task_id=task_id_of({"metadata": task["metadata"],
                                                   "status": step.status}))

    # -- submission of a Task deferred at admission -----------------------------------------

    def _submit(self, step: Step, spec, marker: Marker, generation: int | None) -> None:
        status = step.status
        submission_state = dict(status.get("submission") or {})
        due = parse_time(submission_state.get("nextAttemptAt"))
        if due and due > self.now():
            return
        try:
            # Warms the run's token for this researcher, so the submission below
            # reuses it; a failure is left for the submission to judge and report.
            self.user_token(spec)
        except ServiceError:
            pass
        result = self.submitter.submit(spec, marker,
                                       deadline=Deadline(self.settings.request_timeout * 3))
        if result.outcome is Outcome.SUBMITTED and result.task_id is not None:
            verb = "Adopted" if result.adopted else "Submitted"
            message = (f"{verb} FN task {result.task_id}"
                       + (" made by an earlier attempt." if result.adopted else "."))
            step.status = submitted_status(status, task_id=result.task_id,
                                           generation=generation, message=message,
                                           now=now_rfc3339(self.now()))
            step.submitted = not result.adopted
            step.event(verb, message)
        elif result.outcome is Outcome.REFUSED:
            message = f"The FN task could not be created: {result.message}"
            step.status = self._final(status, Phase.FAILED, "SubmissionRefused", message,
                                      generation)
            step.event("SubmissionRefused", message, True)
        else:
            attempts = int(submission_state.get("attempts") or 0) + 1
            delay = min(self.settings.submit_backoff_cap,
                        self.settings.submit_backoff_base * 2 ** (attempts - 1))
            next_at = now_rfc3339(self.now() + timedelta(seconds=delay))
            message = (f"Not submitted yet (attempt {attempts}): {result.message}. "
                       f"Next attempt after {next_at}.")
            first = status.get("reason") != "FNUnavailable"
            step.status = pending_status(status, reason="FNUnavailable", message=message,
                                         generation=generation,
                                         submission={"attempts": attempts,
                                                     "nextAttemptAt": next_at,
                                                     "lastError": result.message[:300]},
                                         now=now_rfc3339(self.now()))
            if first:
                step.event("SubmissionDeferred", message, True)

    # -- refresh from the FN ---------------------------------------------------------------

    def _refresh(self, step: Step, spec, task_id: int, marker: Marker,
                 generation: int | None) -> None:
        status = step.status
        try:
            fn_task = self.fn.get(self.user_token(spec), task_id)
        except FNRejected as error:
            if error.status == 404:
                message = f"FN task {task_id} no longer exists on the FN."
                step.status = self._final(status, Phase.FAILED, "NotFoundOnFN", message,
                                          generation)
                step.event("NotFoundOnFN", message, True)
                return
            raise
        description = fn_task.get("description")
        if description and description != str(marker):
            # The Task points at an FN task that was made for another Task: never
            # report on it or deliver its results here.
            message = (f"FN task {task_id} belongs to another Task; this Task's FN task id "
                       "was tampered with or copied. Delete and recreate the Task.")
            step.status = self._final(status, Phase.FAILED, "TaskMismatch", message,
                                      generation)
            step.event("TaskMismatch", message, True)
            return

        seen = observe(fn_task.get("status"))
        before = current_phase(status)
        if seen.phase is None:
            log.info("FN task status not understood; phase kept", extra={
                "namespace": marker.namespace, "task": marker.name, "fn_task_id": task_id})
            return
        after = advance(before, seen.phase)
        if after is not seen.phase:
            # An answer behind what the Task already shows (a lagging read on the
            # FN's side): the Task keeps its phase, reason and message as they are.
            return
        if after is before and status.get("reason") == seen.reason:
            return
        now = now_rfc3339(self.now())
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

    def _final(self, status: dict[str, Any], phase: Phase, reason: str, message: str,
               generation: int | None) -> dict[str, Any]:
        now = now_rfc3339(self.now())
        new = dict(status)
        new.update(phase=phase.value, reason=reason, message=message, phaseSince=now)
        new.pop("submission", None)
        new["results"] = {"state": "NotApplicable"}
        conditions = status.get("conditions") or []
        running = get_condition(status, RUNNING)
        if running is not None and running.get("status") == "True":
            conditions = set_condition(conditions, RUNNING, False, reason=reason,
                                       message=message, generation=generation, now=now)
        new["conditions"] = set_condition(conditions, SUCCEEDED, False, reason=reason,
                                          message=message, generation=generation, now=now)
        return new

    # -- stuck Tasks -----------------------------------------------------------------------

    def _check_stuck(self, step: Step, generation: int | None) -> None:
        status = step.status
        phase = current_phase(status)
        since = parse_time(status.get("phaseSince"))
        if phase.final or since is None:
            if get_condition(status, STUCK) and phase.final:
                status["conditions"] = [c for c in status["conditions"] if c["type"] != STUCK]
            return
        now = self.now()
        stuck = (now - since).total_seconds() > self.settings.stuck_after
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
        message = (f"The Task has been {phase.value} for over "
                   f"{span(self.settings.stuck_after)}: {hint}.")
        status["conditions"] = set_condition(status.get("conditions") or [], STUCK, True,
                                             reason=f"Stuck{phase.value}", message=message,
                                             generation=generation, now=now_rfc3339(now))
        step.event("Stuck", message, True)

