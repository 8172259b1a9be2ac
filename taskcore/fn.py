"""Client of the Federated Node's task API.

Every call acts with a Keycloak refresh token (the FN runs its own
refresh-token grant on what it receives). Failures are mapped to our error
classes here and nowhere else: a refusal the FN means for good becomes
:class:`FNRejected`, anything that may pass becomes :class:`FNUnavailable`.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import httpx

from .errors import ServiceError, answer_text, unreachable
from .task import Marker, TaskSpec

log = logging.getLogger(__name__)

#: Some definitive refusals come back as 500 (an image not on the allow-list, a
#: tag missing from the registry, expired results, a second cancel). Any other
#: 500 is treated as the FN being unwell, to be tried again later.
_DEFINITIVE_500 = ("could not be found", "not available anymore", "already cancelled",
                   "does not have a tag")

#: Where the analytics container writes what should come back to the researcher.
RESULTS_PATH = "/mnt/data/results"


#: An FN that claims endless pages of tasks is not followed past this many.
MAX_PAGES = 200


class FNError(ServiceError):
    service = "fn"


class FNRejected(FNError):
    """The FN refused the request for good; the message is the FN's own reason."""


class FNUnavailable(FNError):
    """The FN could not be reached or failed on its side; try again later."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status, transient=True)


class FNAuthFailed(FNError):
    """The FN did not accept the token (401) or the user may not do this (403)."""


class ResultsNotReleased(FNError):
    """Result review is on and the results are not (or never will be) released."""

    def __init__(self, review_status: str) -> None:
        blocked = review_status == "Blocked Release"
        super().__init__(f"the FN's result review says {review_status!r}",
                         status=400, transient=not blocked)
        self.review_status = review_status
        self.blocked = blocked


def task_body(spec: TaskSpec, *, name: str, marker: Marker) -> dict[str, Any]:
    """The body of ``POST /tasks`` (and ``/tasks/validate``) for a Task."""
    tags: dict[str, Any] = {}
    if spec.dataset_id is not None:
        tags["dataset_id"] = spec.dataset_id
    else:
        tags["dataset_name"] = spec.dataset_name
    executor: dict[str, Any] = {"image": spec.image.reference}
    if spec.command:
        executor["command"] = list(spec.command)
    if spec.env:
        executor["env"] = dict(spec.env)
    body: dict[str, Any] = {
        "name": name,
        "description": str(marker),
        "task_controller": True,
        "executors": [executor],
        "tags": tags,
        "inputs": {},
        "outputs": {"results": RESULTS_PATH},
    }
    if spec.resources:
        # Quantities stay text: the FN fails with a 500 on numbers.
        body["resources"] = {section: dict(values)
                             for section, values in spec.resources.items()}
    return body


def _json(response: httpx.Response, what: str) -> Any:
    """The body of a successful answer; one that is not JSON means the FN is unwell
    (or something in front of it answered), which may pass."""
    try:
        return response.json()
    except ValueError as error:
        raise FNUnavailable(f"the FN answered in a form FNTC cannot read while {what}",
                            status=response.status_code) from error


class FNClient:
    """Synchronous client; one instance per process, shared across threads."""

    def __init__(self, base_url: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, token: str, project: str | None = None,
              json_body: Any = None, params: dict[str, Any] | None = None,
              timeout: float | None = None, what: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        if project:
            headers["project-name"] = project
        started = time.monotonic()
        try:
            response = self._http.request(
                method, path, headers=headers, json=json_body, params=params,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as error:
            raise FNUnavailable(unreachable("the FN", what, error)) from error
        finally:
            FN_LATENCY.observe(f"{method} {re.sub(r'/[0-9]+', '/{id}', path)}",
                               time.monotonic() - started)

        if response.is_success:
            return response
        text = answer_text(response, ("error", "message", "status"))
        status = response.status_code
        if status in (401, 403):
            raise FNAuthFailed(f"the FN refused the credentials while {what}: {text}",
                               status=status)
        if status >= 500 and not any(word in text for word in _DEFINITIVE_500):
            raise FNUnavailable(f"the FN failed while {what} ({status}): {text}", status=status)
        if status in (408, 429):
            # A gateway in front of the FN asked to wait or to slow down.
            raise FNUnavailable(f"the FN asked FNTC to try again later while {what} "
                                f"({status}): {text}", status=status)
        raise FNRejected(text, status=status)

    def validate(self, token: str, project: str, body: dict[str, Any], *,
                 timeout: float | None = None) -> None:
        """Ask the FN whether it would accept ``body``; creates nothing."""
        self._call("POST", "/tasks/validate", token=token, project=project, json_body=body,
                   timeout=timeout, what="validating the task")

    def create(self, token: str, project: str, body: dict[str, Any], *,
               timeout: float | None = None) -> int:
        response = self._call("POST", "/tasks", token=token, project=project, json_body=body,
                              timeout=timeout, what="creating the task")
        try:
            task_id = response.json()["task_id"]
            return int(task_id)
        except (ValueError, KeyError, TypeError) as error:
            raise FNUnavailable("the FN created a task but its answer had no task_id") from error

    def get(self, token: str, task_id: int, *, timeout: float | None = None) -> dict[str, Any]:
        response = self._call("GET", f"/tasks/{task_id}", token=token, timeout=timeout,
                              what=f"reading task {task_id}")
        body = _json(response, f"reading task {task_id}")
        if not isinstance(body, dict):
            raise FNUnavailable(f"the FN answered task {task_id} with something not an object")
        return body

    def results(self, token: str, task_id: int, *, timeout: float | None = None) -> bytes:
        """The results archive (zip or tar.gz); raises ResultsNotReleased under review."""
        try:
            response = self._call("GET", f"/tasks/{task_id}/results", token=token,
                                  timeout=timeout, what=f"fetching results of task {task_id}")
        except FNRejected as error:
            if error.status == 400 and str(error) in ("Pending Review", "Blocked Release"):
                raise ResultsNotReleased(str(error)) from error
            raise
        return response.content

    def cancel(self, token: str, task_id: int, *, timeout: float | None = None) -> None:
        self._call("POST", f"/tasks/{task_id}/cancel", token=token, timeout=timeout,
                   what=f"cancelling task {task_id}")

    def find(self, admin_token: str, *, timeout: float | None = None,
             per_page: int = 100, **filters: Any) -> list[dict[str, Any]]:
        """Every task matching ``filters`` (``field__eq=value`` style); admins only."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            params = {**filters, "page": page, "per_page": per_page}
            body = _json(self._call("GET", "/tasks", token=admin_token, params=params,
                                    timeout=timeout, what="listing tasks"), "listing tasks")
            batch = body.get("items") if isinstance(body, dict) else None
            pages = body.get("pages") if isinstance(body, dict) else None
            if not isinstance(batch, list) or not isinstance(pages, (int, type(None))):
                raise FNUnavailable("the FN answered the task list in an unknown shape")
            items.extend(item for item in batch if isinstance(item, dict))
            if page >= (pages or 1) or not batch:
                return items
            if page >= MAX_PAGES:
                log.warning("the FN's task list goes on past %d pages; the rest is left out",
                            MAX_PAGES)
                return items
            page += 1


class _LatencyRecorder:
    """Hands FN call durations to the metrics registry, when one is installed."""

    def __init__(self) -> None:
        self.sink = None

    def observe(self, call: str, seconds: float) -> None:
        if self.sink is not None:
            self.sink(call, seconds)


FN_LATENCY = _LatencyRecorder()
