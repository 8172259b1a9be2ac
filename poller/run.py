"""One run of the poller, as the CronJob starts it.

The run lists the Tasks, reconciles those with work left in parallel (with
bounded concurrency, one Task's trouble never stopping the others), writes
each changed status once with a resourceVersion precondition, cancels
orphaned FN tasks, and ends with a one-line summary.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from taskcore.errors import ServiceError
from taskcore.kube import Conflict, Gone, TaskStore
from taskcore.phases import now_rfc3339, parse_rfc3339
from taskcore.settings import Settings
from taskcore.status import SUBMISSION_CLAIM, changes

from .orphans import cancel_orphan, cancel_orphans
from .reconcile import Reconciler, marker_of, needs_work, task_id_of

log = logging.getLogger(__name__)

#: How often one Task is reconciled again after a write conflict.
CONFLICT_RETRIES = 2
#: Tasks asked for per list request; a continue token fetches the next page.
PAGE_SIZE = 250


def run_identity() -> str:
    """Names one run in the Lease and in submission claims. The random part keeps
    two runs apart even in one process, or in two pods that both run as pid 1."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class Summary:
    """What one run did. ``orphans_cancelled`` counts every FN task no Task keeps that
    the FN agreed to cancel: those whose Task is gone, and second ones for one Task."""

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
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 identity: str | None = None, page_size: int = PAGE_SIZE) -> None:
        self.settings = settings
        self.tasks = tasks
        self.reconciler = reconciler
        self.now = now
        self.identity = identity or run_identity()
        self.page_size = page_size

    @property
    def claim_ttl(self) -> float:
        """Seconds a submission claim holds: well past the longest a submission can
        take (a few Keycloak and FN calls, each bounded by the request timeout), so
        an older claim belongs to a run that died or gave up."""
        return 8 * self.settings.request_timeout

    def run(self) -> Summary:
        started = time.monotonic()
        summary = Summary()
        listed = list(self.tasks.iterate(self.settings.namespaces, page_size=self.page_size))
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
                fn=self.reconciler.fn, keycloak=self.reconciler.keycloak, store=self.tasks,
                tasks=listed, cluster=self.settings.cluster_name,
                namespaces=self.settings.namespaces, grace=self.settings.orphan_grace,
                lookback=self.settings.orphan_lookback, now=self.now)
        except ServiceError as error:
            summary.errors += 1
            log.warning("orphaned FN tasks not checked this run: %s", error)
        summary.seconds = time.monotonic() - started
        return summary

    def _one(self, task: dict[str, Any]) -> _Result:
        meta = task["metadata"]
        fields = {"namespace": meta["namespace"], "task": meta["name"]}
        result = _Result()
        tied: int | None = None     # an FN task this run tied to a Task without one
        for attempt in range(1, CONFLICT_RETRIES + 2):
            try:
                if self.reconciler.submission_due(task):
                    claimed = self._claim(task, fields)
                    if claimed is None:
                        return result
                    task, meta = claimed, claimed["metadata"]
                step = self.reconciler.reconcile(task)
                if task_id_of(task) is None and step.status.get("taskId") is not None:
                    tied = int(step.status["taskId"])
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
                if step.error is not None:
                    log.warning("Task not reconciled this run: %s", step.error, extra=fields)
                    result.error = True
                return result
            except Gone:
                log.info("Task deleted during the run; nothing to write", extra=fields)
                self._cancel_tied(task, tied)
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
                    self._cancel_tied(task, tied)
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

    def _claim(self, task: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any] | None:
        """Take the Task's submission claim, or None when another live run holds it.

        The claim is written with the resourceVersion this run read: of two runs
        that read the same version only one write succeeds (the other gets a
        Conflict, reads again and finds the claim taken), so one FN task is made.
        """
        claim = (task.get("status") or {}).get(SUBMISSION_CLAIM) or {}
        holder, now = claim.get("holder"), self.now()
        since = parse_rfc3339(claim.get("at"))
        if holder and holder != self.identity and since is not None \
                and (now - since).total_seconds() < self.claim_ttl:
            log.info("another poller run is submitting this Task; left to it",
                     extra={**fields, "holder": holder})
            return None
        return self.tasks.patch_status(
            task, {SUBMISSION_CLAIM: {"holder": self.identity, "at": now_rfc3339(now)}},
            resource_version=task["metadata"]["resourceVersion"])

    def _cancel_tied(self, task: dict[str, Any], task_id: int | None) -> None:
        """The Task went away while this run gave it an FN task: cancel that FN task
        now rather than leave it running until the orphan sweep of a later run."""
        if task_id is None:
            return
        try:
            admin = self.reconciler.keycloak.admin_fn_token()
        except ServiceError as error:
            log.warning("FN task of a deleted Task left for the orphan sweep: %s", error,
                        extra={"fn_task_id": task_id})
            return
        cancel_orphan(fn=self.reconciler.fn, admin_token=admin, task_id=task_id,
                      marker=marker_of(task, self.settings.cluster_name),
                      why="its Task was deleted during this run")
