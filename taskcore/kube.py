"""Access to the Kubernetes API: Tasks, their status, Events and Leases.

Everything goes through the official client; this module only adds what the
webhook and the poller need on top: paginated listing that survives an
expired continue token, status writes with a resourceVersion precondition,
and errors mapped to a few classes.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from typing import Any, Iterator

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .errors import ServiceError, excerpt
from .task import GROUP, KIND, PLURAL, VERSION, API_VERSION

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"


class KubeError(ServiceError):
    service = "kubernetes"


class Conflict(KubeError):
    """The object changed since we read it (409); read it again and retry."""


class Gone(KubeError):
    """The object no longer exists."""


def _mapped(error: ApiException, what: str) -> KubeError:
    status = error.status or 0
    reason = excerpt(str(error.body or error.reason or ""), 200)
    if status == 404:
        return Gone(f"{what}: not found", status=404)
    if status == 409:
        return Conflict(f"{what}: the object changed meanwhile", status=409)
    transient = status == 0 or status >= 500 or status == 429
    return KubeError(f"{what} failed ({status}): {reason}", status=status, transient=transient)


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In a pod, the service account; elsewhere ``KUBECONFIG`` or ~/.kube/config."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


def task_ref(task: dict[str, Any]) -> str:
    meta = task.get("metadata", {})
    return f"{meta.get('namespace')}/{meta.get('name')}"


class TaskStore:
    """Reads and writes Task objects."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self._objects = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._objects.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _mapped(error, f"reading Task {namespace}/{name}") from error

    def iterate(self, namespaces: tuple[str, ...] = (), *,
                page_size: int = 250) -> Iterator[dict[str, Any]]:
        """Every Task in ``namespaces`` (all when empty), one page at a time.

        When a continue token expires (410 Gone) the list starts again and the
        Tasks already handed out are skipped, so none is seen twice or missed.
        """
        seen: set[str] = set()
        for namespace in namespaces or (None,):
            restarts = 0
            token: str | None = None
            while True:
                try:
                    page = self._list(namespace, page_size, token)
                except ApiException as error:
                    if error.status == 410 and restarts < 3:
                        restarts += 1
                        log.info("task list continue token expired; listing again",
                                 extra={"attempt": restarts})
                        token = None
                        continue
                    raise _mapped(error, "listing Tasks") from error
                for task in page.get("items", []):
                    uid = task.get("metadata", {}).get("uid", "")
                    if uid not in seen:
                        seen.add(uid)
                        yield task
                token = page.get("metadata", {}).get("continue")
                if not token:
                    break

    def _list(self, namespace: str | None, limit: int, token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"limit": limit}
        if token:
            kwargs["_continue"] = token
        if namespace:
            return self._objects.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, **kwargs)
        return self._objects.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)

    def patch_status(self, task: dict[str, Any], status: dict[str, Any], *,
                     resource_version: str | None = None) -> dict[str, Any]:
        """Merge ``status`` into the Task's status subresource.

        With ``resource_version`` the write only succeeds on that exact version
        (Conflict otherwise), so two writers can never overwrite each other.
        """
        meta = task["metadata"]
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            return self._objects.patch_namespaced_custom_object_status(
                GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], body,
                _content_type=MERGE_PATCH)
        except ApiException as error:
            raise _mapped(error, f"writing the status of Task {task_ref(task)}") from error

    def patch_metadata(self, task: dict[str, Any], *, annotations: dict[str, str | None],
                       resource_version: str | None = None) -> dict[str, Any]:
        meta = task["metadata"]
        body: dict[str, Any] = {"metadata": {"annotations": annotations}}
        if resource_version:
            body["metadata"]["resourceVersion"] = resource_version
        try:
            return self._objects.patch_namespaced_custom_object(
                GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], body,
                _content_type=MERGE_PATCH)
        except ApiException as error:
            raise _mapped(error, f"annotating Task {task_ref(task)}") from error

    def record_event(self, task: dict[str, Any], *, reason: str, message: str,
                     warning: bool = False, component: str = "fntc") -> None:
        """An Event on the Task, shown by ``kubectl describe``. Failing to record one
        is logged and never stops the work it describes."""
        meta = task["metadata"]
        now = datetime.now(timezone.utc)
        # Event times have whole seconds; a name that grows with the nanosecond
        # clock keeps events of one second in the order they happened, which is
        # the order the API server lists them and kubectl describe shows them.
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"{meta['name']}.{time.time_ns():x}",
                                         namespace=meta["namespace"]),
            involved_object=client.V1ObjectReference(
                api_version=API_VERSION, kind=KIND, name=meta["name"],
                namespace=meta["namespace"], uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion")),
            reason=reason, message=message[:1024], type="Warning" if warning else "Normal",
            source=client.V1EventSource(component=component),
            first_timestamp=now, last_timestamp=now, count=1,
            reporting_component=component, reporting_instance=component,
        )
        try:
            self._core.create_namespaced_event(meta["namespace"], event)
        except ApiException as error:
            log.warning("could not record event %s: %s", reason, _mapped(error, "event"),
                        extra={"namespace": meta["namespace"], "task": meta["name"]})
