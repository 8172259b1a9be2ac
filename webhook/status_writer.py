"""Writes a new Task's first status as soon as the Task is stored.

The API server drops ``.status`` sent at CREATE, and the Task does not
exist yet while the webhook answers. So after answering, the webhook waits
briefly for the Task to appear (with this admission's uid, so a different
Task of the same name is never touched) and writes the status then. If it
never appears, nothing is written; the poller's next run covers any gap.
"""

from __future__ import annotations

import logging
import time

from taskcore.errors import ServiceError
from taskcore.kube import Conflict, Gone, TaskStore
from taskcore.status import pending_status, submitted_status
from taskcore.submission import Outcome, Submission
from taskcore.task import ADMISSION_UID_ANNOTATION

log = logging.getLogger(__name__)


class StatusWriter:
    def __init__(self, tasks: TaskStore, *, wait: float = 15.0, interval: float = 0.02,
                 max_interval: float = 0.25) -> None:
        self.tasks = tasks
        self.wait = wait
        self.interval = interval
        self.max_interval = max_interval

    def write_initial(self, namespace: str, name: str, *, uid: str,
                      submission: Submission) -> bool:
        fields = {"namespace": namespace, "task": name, "uid": uid}
        deadline = time.monotonic() + self.wait
        # The API server stores the Task milliseconds after our answer, and
        # `kubectl get` right after `kubectl apply` should already show the
        # status: look often at first, then less so.
        interval = self.interval
        while time.monotonic() < deadline:
            try:
                task = self.tasks.get(namespace, name)
            except ServiceError as error:
                log.info("initial status: reading the Task failed: %s", error, extra=fields)
                task = None
            if task is not None:
                annotations = task["metadata"].get("annotations") or {}
                if annotations.get(ADMISSION_UID_ANNOTATION) != uid:
                    return False
                if task.get("status"):
                    return False    # the poller got there first
                return self._write(task, submission, fields)
            time.sleep(interval)
            interval = min(interval * 1.5, self.max_interval)
        log.info("initial status: the Task was not stored; the poller will check the FN task",
                 extra=fields)
        return False

    def _write(self, task: dict, submission: Submission, fields: dict) -> bool:
        generation = task["metadata"].get("generation")
        if submission.outcome is Outcome.SUBMITTED and submission.task_id is not None:
            status = submitted_status({}, task_id=submission.task_id, generation=generation,
                                      message=f"Submitted to the FN as task "
                                              f"{submission.task_id}.")
        else:
            status = pending_status({}, reason="FNUnavailable", generation=generation,
                                    message=f"Not submitted yet: {submission.message}. "
                                            "The poller will try again.",
                                    submission={"attempts": 1})
        try:
            self.tasks.patch_status(task, status,
                                    resource_version=task["metadata"]["resourceVersion"])
        except (Conflict, Gone):
            return False
        except ServiceError as error:
            log.warning("initial status not written: %s", error, extra=fields)
            return False
        self.tasks.record_event(task, reason=status["reason"], message=status["message"],
                                warning=submission.outcome is not Outcome.SUBMITTED,
                                component="fntc-webhook")
        return True
