"""FN tasks no Task keeps: cancel them.

At admission the webhook creates the FN task before the API server stores
the Task. If the Task is then refused (its name taken, a later webhook
said no, storage failed), the FN task has no Task. Two webhook replicas
answering one retried admission can also both create one, leaving a twin
that the Task does not point at. The marker in an FN task's description
names the namespace, Task and admission uid, which is enough to tell.

The Tasks listed at the start of a run are only a first sieve: by the end
of the run one may have been created, or given its FN task. So each FN task
about to be cancelled has its Task read again, and is left alone when that
Task keeps it. Only FN tasks created within ``FNTC_ORPHAN_LOOKBACK`` are
looked at, so the sweep does not grow with the FN's whole history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from taskcore.errors import ServiceError
from taskcore.fn import FNClient
from taskcore.keycloak import Keycloak
from taskcore.kube import TaskStore
from taskcore.phases import observe
from taskcore.task import Marker

from .reconcile import marker_of, task_id_of

log = logging.getLogger(__name__)

#: The FN's own time format, in task fields and in the filters on them.
FN_TIME = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Candidate:
    """An unfinished FN task of this cluster that no listed Task points at."""

    task_id: int
    marker: Marker


def _created(item: dict[str, Any]) -> datetime | None:
    try:
        return datetime.strptime(str(item.get("created_at")), FN_TIME).replace(
            tzinfo=timezone.utc)
    except ValueError:
        return None


def find_candidates(fn_tasks: Iterable[dict[str, Any]], tasks: Iterable[dict[str, Any]], *,
                    cluster: str, namespaces: tuple[str, ...], grace: float,
                    now: datetime) -> list[Candidate]:
    """FN tasks of this cluster, unfinished and older than ``grace``, whose id no listed
    Task holds. Items the FN lists in a shape FNTC does not know are passed over."""
    held = {task_id_of(task) for task in tasks}
    candidates = []
    for item in fn_tasks:
        task_id = item.get("id")
        if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id in held:
            continue
        marker = Marker.parse(item.get("description"))
        if marker is None or marker.cluster != cluster:
            continue
        if namespaces and marker.namespace not in namespaces:
            continue
        observed = observe(item.get("status"))
        if observed.phase is not None and observed.phase.final:
            continue
        created = _created(item)
        if created is None or (now - created).total_seconds() < grace:
            continue
        candidates.append(Candidate(task_id, marker))
    return candidates


def unkept(candidate: Candidate, task: dict[str, Any] | None, cluster: str) -> str | None:
    """Why no Task keeps the candidate, read from its Task as it is now; None when the
    Task keeps it (or will: a Task without an FN task yet adopts the one its marker
    names)."""
    if task is None:
        return "its Task does not exist"
    task_id = task_id_of(task)
    if task_id == candidate.task_id:
        return None
    if not marker_of(task, cluster).names_same_task(candidate.marker):
        return "its Task was deleted; a Task of the same name was made since"
    if task_id is None:
        return None
    return f"a second FN task for its Task, which has FN task {task_id}"


def cancel_orphan(*, fn: FNClient, admin_token: str, task_id: int, marker: Marker,
                  why: str = "its Task does not exist") -> bool:
    """Ask the FN to cancel one FN task that no Task keeps; True when it accepted."""
    fields = {"namespace": marker.namespace, "task": marker.name, "fn_task_id": task_id}
    try:
        fn.cancel(admin_token, task_id)
    except ServiceError as error:
        log.warning("FN task no Task keeps not cancelled (%s): %s", why, error, extra=fields)
        return False
    log.info("cancelled an FN task no Task keeps: %s", why, extra=fields)
    return True


def cancel_orphans(*, fn: FNClient, keycloak: Keycloak, store: TaskStore,
                   tasks: list[dict[str, Any]], cluster: str, namespaces: tuple[str, ...],
                   grace: float, lookback: float, now: Callable[[], datetime]) -> int:
    """Cancel every FN task no Task keeps; returns how many the FN accepted to cancel."""
    admin = keycloak.admin_fn_token()
    since = (now() - timedelta(seconds=lookback)).astimezone(timezone.utc).strftime(FN_TIME)
    fn_tasks = fn.find(admin, task_controller__eq="true", created_at__gt=since)
    cancelled = 0
    for candidate in find_candidates(fn_tasks, tasks, cluster=cluster, namespaces=namespaces,
                                     grace=grace, now=now()):
        marker = candidate.marker
        try:
            task = store.get(marker.namespace, marker.name)
        except ServiceError as error:
            log.warning("FN task left for a later sweep; its Task could not be read: %s",
                        error, extra={"namespace": marker.namespace, "task": marker.name,
                                      "fn_task_id": candidate.task_id})
            continue
        why = unkept(candidate, task, cluster)
        if why is not None:
            cancelled += cancel_orphan(fn=fn, admin_token=admin, task_id=candidate.task_id,
                                       marker=marker, why=why)
    return cancelled
