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
from taskcore.phases import Phase, now_rfc3339, observe, parse_rfc3339
from taskcore.settings import Settings
from taskcore.status import (RUNNING, SUBMISSION_CLAIM, SUCCEEDED, current_phase,
                             get_condition, pending_status, set_condition, submitted_status)
from taskcore.submission import Deadline, Outcome, Submitter
from taskcore.task import ADMISSION_UID_ANNOTATION, TASK_ID_ANNOTATION, Marker, TaskSpec

from .delivery import Deliverer, results_settled
from .health import check_stuck, mark_synced, mark_unsynced, span
from .refresh import apply_observation, dataset_note, fn_dataset, made_for
from .spec_checks import read_spec

__all__ = ["Reconciler", "Step", "marker_of", "needs_work", "span", "task_id_of"]

log = logging.getLogger(__name__)


@dataclass
class Step:
    """What one reconcile decided: the status to write and the Events to record."""

    status: dict[str, Any]
    events: list[tuple[str, str, bool]] = field(default_factory=list)  # reason, message, warn
    submitted: bool = False
    delivered: bool = False
    #: True once this run read the FN task and found this Task's marker on it.
    verified: bool = False
    #: Why this run could not follow the Task, when it could not; the status above
    #: still holds what the run learnt before that, and says so in its Synced condition.
    error: ServiceError | None = None

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append((reason, message, warning))


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

    def user_token(self, spec: TaskSpec) -> str:
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
        if read_spec(meta["name"], task.get("spec"), submitted=False,
                     allowed_registries=self.settings.allowed_registries).spec is None:
            return False
        due = parse_rfc3339((status.get("submission") or {}).get("nextAttemptAt"))
        return not (due and due > self.now())

    def reconcile(self, task: dict[str, Any]) -> Step:
        status = dict(task.get("status") or {})
        meta = task["metadata"]
        generation = meta.get("generation")
        step = Step(status)
        task_id = task_id_of(task)
        phase = current_phase(status)
        reading = read_spec(meta["name"], task.get("spec"), submitted=task_id is not None,
                            allowed_registries=self.settings.allowed_registries)
        spec = reading.spec
        if spec is None and task_id is None:
            if not phase.final:
                message = "The Task cannot run: " + "; ".join(reading.problems)
                step.status = self._final(status, Phase.FAILED, "InvalidSpec", message,
                                          generation)
                step.event("InvalidSpec", message, True)
            return step
        if spec is None:
            # Submitted under the checks of its day: never failed by today's while its FN
            # task runs; only marked, as nothing more can be done for it.
            if needs_work(task):
                mark_unsynced(step, reason="SpecUnreadable", warning=True,
                              message=(f"FNTC cannot follow FN task {task_id}: the Task's "
                                       "spec no longer names a researcher, a repository and "
                                       "a branch it can read (" + "; ".join(reading.problems)
                                       + "). Delete the Task to cancel its FN task."),
                              generation=generation, now=self.now())
                self._check_stuck(step, generation)
            return step

        marker = marker_of(task, self.settings.cluster_name)
        try:
            self._move_on(step, task, spec, marker, task_id)
        except ServiceError as error:
            step.error = error
            mark_unsynced(step, reason="ReconcileError", warning=not error.transient,
                          message=(f"This run could not follow the Task: {error}. The "
                                   "poller tries again on its next run."),
                          generation=generation, now=self.now())
        else:
            mark_synced(step, generation=generation, now=self.now())
        self._check_stuck(step, generation)
        return step

    def _move_on(self, step: Step, task: dict[str, Any], spec: TaskSpec, marker: Marker,
                 task_id: int | None) -> None:
        """Submit, read the FN task, or deliver: whatever comes next for the Task."""
        status = step.status
        generation = task["metadata"].get("generation")
        phase = current_phase(status)
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

    def _deliver(self, step: Step, task: dict[str, Any], spec: TaskSpec,
                 marker: Marker) -> None:
        task_id = task_id_of({"metadata": task["metadata"], "status": step.status})
        if self.deliverer is None or task_id is None:
            return
        try:
            token = self.user_token(spec)
        except ServiceError as error:
            # The phase this run learnt is still written; only the delivery waits.
            self.deliverer.postpone(step, task, marker,
                                    f"no FN token for {spec.requester}: {error}")
            return
        if not step.verified:
            # A Task that finished in an earlier run: its FN task must still be the one
            # made for it before any results go to its repository.
            try:
                fn_task = self.fn.get(token, task_id)
            except ServiceError as error:
                self.deliverer.postpone(step, task, marker,
                                        f"FN task {task_id} could not be read: {error}")
                return
            if not made_for(fn_task, marker):
                self.deliverer.refuse(step, task, f"FN task {task_id} was not made for "
                                      "this Task, so its results are not delivered here.")
                return
        self.deliverer.deliver(step, task, spec, marker, token=token, task_id=task_id)

    # -- submission of a Task deferred at admission -----------------------------------------

    def _submit(self, step: Step, spec: TaskSpec, marker: Marker,
                generation: int | None) -> None:
        status = step.status
        submission_state = dict(status.get("submission") or {})
        due = parse_rfc3339(submission_state.get("nextAttemptAt"))
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
            message = (f"Adopted FN task {result.task_id} made by an earlier attempt."
                       if result.adopted else f"Submitted to the FN as task {result.task_id}.")
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
                        self.settings.submit_backoff_base * 2 ** min(attempts - 1, 32))
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

    def _refresh(self, step: Step, spec: TaskSpec, task_id: int, marker: Marker,
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
        if not made_for(fn_task, marker):
            message = (f"FN task {task_id} was not made for this Task; its FN task id was "
                       "tampered with or copied. Delete and recreate the Task.")
            step.status = self._final(status, Phase.FAILED, "TaskMismatch", message,
                                      generation)
            step.event("TaskMismatch", message, True)
            return
        step.verified = True

        actual = fn_dataset(fn_task)
        note = dataset_note(spec, actual)
        if actual is not None and status.get("datasetId") != actual:
            status["datasetId"] = actual
            if note:
                step.event("DatasetMismatch", f"FN task {task_id}: {note}", True)
        seen = observe(fn_task.get("status"), task_id=task_id)
        if seen.phase is None:
            log.info("FN task status not understood; phase kept", extra={
                "namespace": marker.namespace, "task": marker.name, "fn_task_id": task_id})
        apply_observation(step, seen, task_id=task_id, generation=generation,
                          now=now_rfc3339(self.now()))
        message = step.status.get("message") or ""
        if note and note not in message:
            step.status["message"] = f"{message} {note}".strip()

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

    def _check_stuck(self, step: Step, generation: int | None) -> None:
        check_stuck(step, generation=generation, stuck_after=self.settings.stuck_after,
                    now=self.now())
