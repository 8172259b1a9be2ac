"""FN tasks whose Task was never stored, or is gone: cancel them.

At admission the webhook creates the FN task before the API server stores
the Task. If the Task is then refused (its name taken, a later webhook
said no, storage failed), the FN task has no Task. Its marker names the
namespace, Task and admission uid, which is enough to tell.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from taskcore.errors import ServiceError
from taskcore.fn import FNClient
from taskcore.keycloak import Keycloak
from taskcore.phases import observe
from taskcore.task import Marker

from .reconcile import marker_of, task_id_of

log = logging.getLogger(__name__)


def _created(item: dict[str, Any]) -> datetime | None:
    try:
        return datetime.strptime(str(item.get("created_at")), "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=timezone.utc)
    except ValueError:
        return None


def find_orphans(fn_tasks: Iterable[dict[str, Any]], tasks: Iterable[dict[str, Any]], *,
                 cluster: str, namespaces: tuple[str, ...], grace: float,
                 now: datetime) -> list[tuple[int, Marker]]:
    """FN tasks of this cluster that no listed Task claims, older than ``grace``."""
    claimed_markers = {str(marker_of(task, cluster)) for task in tasks}
    claimed_ids = {task_id_of(task) for task in tasks}
    orphans = []
    for item in fn_tasks:
        marker = Marker.parse(item.get("description"))
        if marker is None or marker.cluster != cluster:
            continue
        if namespaces and marker.namespace not in namespaces:
            continue
        if str(marker) in claimed_markers or item.get("id") in claimed_ids:
            continue
        observed = observe(item.get("status"))
        if observed.phase is not None and observed.phase.final:
            continue
        created = _created(item)
        if created is None or (now - created).total_seconds() < grace:
            continue
        orphans.append((int(item["id"]), marker))
    return orphans


def cancel_orphan(*, fn: FNClient, admin_token: str, task_id: int, marker: Marker) -> bool:
    """Ask the FN to cancel one FN task that no Task claims; True when it accepted."""
    fields = {"namespace": marker.namespace, "task": marker.name, "fn_task_id": task_id}
    try:
        fn.cancel(admin_token, task_id)
    except ServiceError as error:
        log.warning("orphan FN task not cancelled: %s", error, extra=fields)
        return False
    log.info("cancelled FN task whose Task does not exist", extra=fields)
    return True


def cancel_orphans(*, fn: FNClient, keycloak: Keycloak, tasks: list[dict[str, Any]],
                   cluster: str, namespaces: tuple[str, ...], grace: float,
                   now: Callable[[], datetime]) -> int:
    """Cancel every orphan; returns how many the FN accepted to cancel."""
    admin = keycloak.admin_fn_token()
    fn_tasks = fn.find(admin, task_controller__eq="true")
    return sum(cancel_orphan(fn=fn, admin_token=admin, task_id=task_id, marker=marker)
               for task_id, marker in find_orphans(fn_tasks, tasks, cluster=cluster,
                                                   namespaces=namespaces, grace=grace,
                                                   now=now()))
