"""One run of the poller, as the CronJob starts it.

The run lists the Tasks, reconciles those with work left in parallel (with
bounded concurrency, one Task's trouble never stopping the others), writes
each changed status once with a resourceVersion precondition, cancels
orphaned FN tasks, and ends with a one-line summary.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from taskcore.errors import ServiceError
from taskcore.kube import Conflict, Gone, TaskStore
from taskcore.settings import Settings
from taskcore.status import changes

from .orphans import cancel_orphans
from .reconcile import Reconciler, needs_work

log = logging.getLogger(__name__)

#: How often one Task is reconciled again after a write conflict.
CONFLICT_RETRIES = 2


@dataclass
class Summary:
    seen: int = 0
    skipped: int = 0
    changed: int = 0
    submitted: int = 0
    delivered: int = 0
    orphans_cancelled: int = 0
    errors: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (f"poller run: seen={self.seen} skipped={self.skipped} changed={self.changed} "
                f"submitted={self.submitted} delivered={self.delivered} "
                f"orphans_cancelled={self.orphans_cancelled} errors={self.errors} "
                f"seconds={self.seconds:.2f}")


@dataclass
class _Result:
    changed: bool = False
    submitted: bool = False
    delivered: bool = False
    error: bool = False


class Poller:
    def __init__(self, settings: Settings, *, tasks: TaskStore, reconciler: Reconciler,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.settings = settings
        self.tasks = tasks
        self.reconciler = reconciler
        self.now = now

    def run(self) -> Summary:
        started = time.monotonic()
        summary = Summary()
        listed = list(self.tasks.iterate(self.settings.namespaces))
        summary.seen = len(listed)
        active = [task for task in listed if needs_work(task)]
        summary.skipped = summary.seen - len(active)

        with ThreadPoolExecutor(max_workers=self.settings.concurrency,
                                thread_name_prefix="reconcile") as pool:
            for result in pool.map(self._one, active):
                summary.changed += result.changed
                summary.submitted += result.submitted
                summary.delivered += result.delivered
                summary.errors += result.error

        try:
            summary.orphans_cancelled = cancel_orphans(
                fn=self.reconciler.fn, keycloak=self.reconciler.keycloak, tasks=listed,
                cluster=self.settings.cluster_name, namespaces=self.settings.namespaces,
                grace=self.settings.orphan_grace, now=self.now)
        except ServiceError as error:
            summary.errors += 1
            log.warning("orphaned FN tasks not checked this run: %s", error)
        summary.seconds = time.monotonic() - started
        return summary

    def _one(self, task: dict[str, Any]) -> _Result:
        meta = task["metadata"]
        fields = {"namespace": meta["namespace"], "task": meta["name"]}
        result = _Result()
        for attempt in range(1, CONFLICT_RETRIES + 2):
            try:
                step = self.reconciler.reconcile(task)
                patch = changes(task.get("status") or {}, step.status)
                result.submitted |= step.submitted
                if patch:
                    self.tasks.patch_status(task, patch,
                                            resource_version=meta["resourceVersion"])
                    result.changed = True
                    result.delivered |= step.delivered
                    for reason, message, warning in step.events:
                        self.tasks.record_event(task, reason=reason, message=message,
                                                warning=warning, component="fntc-poller")
                    log.info("status %s", step.status.get("phase"),
                             extra={**fields, "reason": step.status.get("reason")})
                return result
            except Gone:
                log.info("Task deleted during the run; nothing to write", extra=fields)
                return result
            except Conflict:
                will_retry = attempt <= CONFLICT_RETRIES
                log.info("status write conflicted (attempt %d, %s)", attempt,
                         "retrying" if will_retry else "left for the next run", extra=fields)
                if not will_retry:
                    result.error = True
                    return result
                fresh = self.tasks.get(meta["namespace"], meta["name"])
                if fresh is None:
                    return result
                task, meta = fresh, fresh["metadata"]
            except ServiceError as error:
                log.warning("Task not reconciled this run: %s", error, extra=fields)
                result.error = True
                return result
            except Exception:  # noqa: BLE001 - one bad Task never stops the run
                log.exception("Task reconcile crashed", extra=fields)
                result.error = True
                return result
        return result

