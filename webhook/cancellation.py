"""Cancels the FN task of a deleted Task, and only that one, only once the Task is gone.

A DELETE that reaches the webhook is not yet a deletion: a later webhook or a
storage error can still refuse it, and a forged review can name any FN task
id it likes. So the cancel waits, off the admission path, until the API
server no longer has the Task (or has a new one of that name), and then asks
the FN only if the FN task's own marker names this Task. Anything less
certain cancels nothing; the poller's orphan collection covers what is left.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import urllib3

from taskcore.errors import ServiceError
from taskcore.fn import FNClient
from taskcore.keycloak import Keycloak
from taskcore.kube import TaskStore
from taskcore.task import Marker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeletedTask:
    """What the DELETE review said about the Task: where it was, which object it was
    (``uid``, empty when the review did not say), the admission uid in its marker, and
    the FN task it names."""

    namespace: str
    name: str
    uid: str
    admission_uid: str
    task_id: int

    @property
    def fields(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "task": self.name, "fn_task_id": self.task_id}


class Canceller:
    """``cancel_when_gone`` runs in the background; ``clock`` and ``sleep`` let tests
    decide how time passes."""

    def __init__(self, tasks: TaskStore, *, keycloak: Keycloak, fn: FNClient,
                 wait: float = 60.0, interval: float = 0.05, max_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.tasks = tasks
        self.keycloak = keycloak
        self.fn = fn
        self.wait = wait
        self.interval = interval
        self.max_interval = max_interval
        self._clock = clock
        self._sleep = sleep

    def cancel_when_gone(self, deleted: DeletedTask) -> bool:
        """True when the FN accepted the cancel."""
        if not self._gone(deleted):
            log.info("the Task is still stored %.0f s after its DELETE; its FN task is "
                     "not cancelled", self.wait, extra=deleted.fields)
            return False
        try:
            admin = self.keycloak.admin_fn_token()
            view = self.fn.get(admin, deleted.task_id)
        except ServiceError as error:
            log.warning("could not read the FN task of a deleted Task: %s", error,
                        extra=deleted.fields)
            return False
        found = Marker.parse(view.get("description"))
        wanted = Marker("", deleted.namespace, deleted.name, deleted.admission_uid)
        if found is None or not found.names_same_task(wanted):
            log.warning("the FN task named by a deleted Task was not made for it; "
                        "not cancelled", extra=deleted.fields)
            return False
        try:
            self.fn.cancel(admin, deleted.task_id)
        except ServiceError as error:
            log.warning("FN did not cancel the task of a deleted Task: %s", error,
                        extra=deleted.fields)
            return False
        log.info("cancelled FN task of deleted Task", extra=deleted.fields)
        return True

    def _gone(self, deleted: DeletedTask) -> bool:
        """Whether the API server stopped holding the Task within ``wait`` seconds.

        A Task of the same name with another uid is a new Task, so the old one is
        gone. Without the old uid only absence counts, or a forged review could
        pass off the live Task as its successor.
        """
        end = self._clock() + self.wait
        interval = self.interval
        while True:
            try:
                task = self.tasks.get(deleted.namespace, deleted.name)
            except (ServiceError, urllib3.exceptions.HTTPError, OSError) as error:
                log.info("checking that a deleted Task is gone failed: %s", error,
                         extra=deleted.fields)
            else:
                if task is None:
                    return True
                uid = (task.get("metadata") or {}).get("uid")
                if deleted.uid and uid and uid != deleted.uid:
                    return True
            if self._clock() >= end:
                return False
            self._sleep(interval)
            interval = min(interval * 1.5, self.max_interval)
