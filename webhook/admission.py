"""What the webhook decides for each operation on a Task.

CREATE checks the requester, the namespace, the spec and the researcher,
then submits the FN task and records its id with a JSON patch. UPDATE keeps
a submitted spec and our annotations as they are. DELETE has the FN task
cancelled once the Task is really gone, without ever holding the deletion up.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from collections import OrderedDict
from typing import Any, Callable

import urllib3

from taskcore.errors import ServiceError
from taskcore.fn import FNClient
from taskcore.keycloak import Keycloak
from taskcore.kube import TaskStore
from taskcore.settings import Settings
from taskcore.submission import Deadline, Outcome, Submission, Submitter
from taskcore.task import (ADMISSION_UID_ANNOTATION, SUBMISSION_ANNOTATION, TASK_ID_ANNOTATION,
                           Marker, review_spec)

from .cancellation import Canceller, DeletedTask
from .review import (AdmissionRequest, AdmissionResponse, allowed, annotation_patch, denied,
                     patched)
from .status_writer import StatusWriter

log = logging.getLogger(__name__)

OUR_ANNOTATIONS = (TASK_ID_ANNOTATION, ADMISSION_UID_ANNOTATION, SUBMISSION_ANNOTATION)
#: Phases after which the FN task has nothing left to do.
FINISHED = ("Succeeded", "Failed", "Cancelled")


class _RecentSubmissions:
    """Admission uids answered lately, so a repeated call never submits twice."""

    def __init__(self, size: int = 4096) -> None:
        self._items: OrderedDict[str, AdmissionResponse] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._size = size

    def lock_for(self, uid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(uid, threading.Lock())

    def get(self, uid: str) -> AdmissionResponse | None:
        with self._guard:
            return self._items.get(uid)

    def put(self, uid: str, answer: AdmissionResponse | None) -> None:
        """Remember ``answer`` (None: nothing to remember) and drop the uid's lock."""
        with self._guard:
            if answer is not None:
                self._items[uid] = answer
            self._locks.pop(uid, None)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def _annotations(obj: dict[str, Any] | None) -> dict[str, str]:
    value = ((obj or {}).get("metadata") or {}).get("annotations")
    return value if isinstance(value, dict) else {}


def _task_id(obj: dict[str, Any]) -> int | None:
    """The FN task id a stored Task names, from its status or else its annotation."""
    value = (obj.get("status") or {}).get("taskId") or _annotations(obj).get(TASK_ID_ANNOTATION)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _was_submitted(obj: dict[str, Any] | None) -> bool:
    annotations = _annotations(obj)
    status = (obj or {}).get("status") or {}
    return bool(annotations.get(TASK_ID_ANNOTATION) or annotations.get(SUBMISSION_ANNOTATION)
                or status.get("taskId"))


#: Threads for the work done after an answer; each job waits at most about a minute.
BACKGROUND_WORKERS = 8
_pool: ThreadPoolExecutor | None = None
_pool_guard = threading.Lock()


def _background_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_guard:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=BACKGROUND_WORKERS,
                                       thread_name_prefix="after-answer")
        return _pool


class Admission:
    """Decides one AdmissionReview at a time; safe to call from many threads.

    ``run_later`` runs work that must not hold the answer up (the first status,
    a cancel on delete); by default a small pool of threads, so a mass deletion
    queues its cancels instead of starting a thread each; in tests whatever they like.
    """

    def __init__(self, settings: Settings, *, submitter: Submitter, tasks: TaskStore,
                 status_writer: StatusWriter | None = None,
                 canceller: Canceller | None = None,
                 run_later: Callable[[Callable[[], None]], None] | None = None) -> None:
        self.settings = settings
        self.submitter = submitter
        self.tasks = tasks
        self.status_writer = status_writer
        self.canceller = canceller or Canceller(tasks, keycloak=submitter.keycloak,
                                                fn=submitter.fn)
        self._run_later = run_later or _background_pool().submit
        self._recent = _RecentSubmissions()

    @classmethod
    def from_settings(cls, settings: Settings, tasks: TaskStore) -> "Admission":
        keycloak = Keycloak.from_settings(settings)
        fn = FNClient(settings.fn_url, timeout=settings.request_timeout)
        return cls(settings, submitter=Submitter(settings, keycloak=keycloak, fn=fn),
                   tasks=tasks, status_writer=StatusWriter(tasks))

    def review(self, request: AdmissionRequest) -> AdmissionResponse:
        """The answer to one review; every refusal is logged once, here."""
        if request.operation == "CREATE":
            answer = self.create(request)
        elif request.operation == "UPDATE":
            answer = self.update(request)
        elif request.operation == "DELETE":
            answer = self.delete(request)
        else:
            return allowed("ignored")
        if not answer.allowed:
            log.info("admission %s refused: %s", request.operation, answer.message,
                     extra={"namespace": request.namespace, "task": request.name,
                            "uid": request.uid, "requester": request.user_info.username,
                            "dry_run": request.dry_run})
        return answer

    # -- CREATE ----------------------------------------------------------------------------

    def create(self, request: AdmissionRequest) -> AdmissionResponse:
        cached = self._recent.get(request.uid)
        if cached is not None:
            return cached
        with self._recent.lock_for(request.uid):
            cached = self._recent.get(request.uid)
            if cached is not None:
                return cached
            answer = self._create(request)
            self._recent.put(request.uid, None if request.dry_run else answer)
            return answer

    def _requester_allowed(self, request: AdmissionRequest) -> bool:
        allow = self.settings.allowed_requesters
        if not allow:
            return True
        user = request.user_info
        return user.username in allow or any(group in allow for group in user.groups)

    def _create(self, request: AdmissionRequest) -> AdmissionResponse:
        """Refusals carry no warnings: the refusal is what the author has to act on."""
        obj = request.object or {}
        meta = obj.get("metadata") or {}
        name = request.name or str(meta.get("name") or "")
        namespace = request.namespace or str(meta.get("namespace") or "")
        fields = {"namespace": namespace, "task": name, "uid": request.uid}

        if not self._requester_allowed(request):
            return denied(f"{request.user_info.username or 'this requester'} may not create "
                          "Tasks: a Task acts for the researcher it names, so only the "
                          "identities in FNTC_ALLOWED_REQUESTERS (such as ArgoCD) may")
        served = self.settings.namespaces
        if served and namespace not in served:
            # The poller lists only these namespaces: a Task elsewhere would never
            # be followed, nor its results delivered.
            return denied(f"FNTC serves Tasks only in the namespace"
                          f"{'s' if len(served) > 1 else ''} {', '.join(served)}; create "
                          f"the Task there, not in {namespace}")

        spec_review = review_spec(name, obj.get("spec"),
                                  allowed_registries=self.settings.allowed_registries)
        if not spec_review.ok or spec_review.spec is None:
            return denied("Task refused: " + "; ".join(spec_review.problems))
        spec = spec_review.spec

        deadline = Deadline(self.settings.admission_budget)
        try:
            if self.tasks.get(namespace, name) is not None:
                return denied(f"a Task named {name} already exists in {namespace}; "
                              "choose another name")
        except (ServiceError, urllib3.exceptions.HTTPError, OSError) as error:
            log.warning("could not check that the Task name is free: %s", error, extra=fields)
            return denied("FNTC could not check that the Task name is free; try again",
                          outcome="error", code=503)

        marker = Marker(self.settings.cluster_name, namespace, name, request.uid)
        submission = self.submitter.submit(spec, marker, deadline=deadline,
                                           dry_run=request.dry_run)
        log.info("admission %s: %s", submission.outcome.value.lower(), submission.message,
                 extra={**fields, "dry_run": request.dry_run})
        return self._answer(request, submission,
                            [*spec_review.warnings, *submission.warnings])

    def _answer(self, request: AdmissionRequest, submission: Submission,
                warnings: list[str]) -> AdmissionResponse:
        obj = request.object or {}
        if submission.outcome is Outcome.REFUSED:
            return denied(f"Task refused: {submission.message}")
        if request.dry_run:
            # Nothing was submitted, so the answer only drops annotations of ours
            # that the author wrote: they are never taken on trust.
            patch = annotation_patch(obj, dict.fromkeys(OUR_ANNOTATIONS))
            if submission.outcome is Outcome.DEFERRED:
                warnings = [*warnings, "the Federated Node could not be reached to validate "
                            f"this Task ({submission.message}); it would be admitted as "
                            "Pending and submitted later"]
                return patched(patch, "deferred", warnings=warnings)
            return patched(patch, "validated", warnings=warnings)

        deferred = submission.outcome is Outcome.DEFERRED
        patch = annotation_patch(obj, {
            ADMISSION_UID_ANNOTATION: request.uid,
            TASK_ID_ANNOTATION: None if deferred else str(submission.task_id),
            SUBMISSION_ANNOTATION: "deferred" if deferred else "submitted",
        })
        if deferred:
            warnings = [*warnings, f"FNTC could not submit the Task yet ({submission.message}); "
                        "it is admitted as Pending and will be submitted later"]
        if self.status_writer is not None:
            name, namespace = request.name or obj["metadata"]["name"], request.namespace
            self._run_later(lambda: self.status_writer.write_initial(
                namespace, name, uid=request.uid, submission=submission))
        return patched(patch, "deferred" if deferred else "submitted", warnings=warnings)

    # -- UPDATE ----------------------------------------------------------------------------

    def update(self, request: AdmissionRequest) -> AdmissionResponse:
        if request.sub_resource:
            return allowed("ignored")
        old, new = request.old_object or {}, request.object or {}
        old_annotations, new_annotations = _annotations(old), _annotations(new)
        changed = [key for key in OUR_ANNOTATIONS
                   if old_annotations.get(key) != new_annotations.get(key)]
        if changed:
            return denied(f"annotation {changed[0]} is set by FNTC and cannot be changed; "
                          "it ties the Task to its FN task")
        if _was_submitted(old) and old.get("spec") != new.get("spec"):
            status = old.get("status") or {}
            if status.get("phase") in FINISHED:
                return denied("the spec of a submitted Task cannot change; create a new "
                              "Task with a new name to run it again")
            if _annotations(old).get(SUBMISSION_ANNOTATION) == "deferred" and \
                    not status.get("taskId"):
                why = "FNTC submits it to the FN as it was admitted"
            else:
                why = "the FN task already runs as written"
            return denied(f"the spec of a submitted Task cannot change, since {why}; "
                          "create a new Task with a new name instead")
        return allowed("unchanged")

    # -- DELETE ----------------------------------------------------------------------------

    def delete(self, request: AdmissionRequest) -> AdmissionResponse:
        """Allowed always; the cancel waits in the background until the Task is gone."""
        old = request.old_object or {}
        meta = old.get("metadata") or {}
        task_id = _task_id(old)
        phase = (old.get("status") or {}).get("phase", "")
        if request.dry_run or task_id is None or phase in FINISHED:
            return allowed("deleted")
        deleted = DeletedTask(
            namespace=request.namespace or str(meta.get("namespace") or ""),
            name=request.name or str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            admission_uid=str(_annotations(old).get(ADMISSION_UID_ANNOTATION) or ""),
            task_id=task_id)
        if not deleted.admission_uid:
            # Without it no FN task can be told apart as this Task's; the poller
            # cancels FN tasks whose Task is gone.
            log.info("deleted Task has no admission uid; nothing cancelled now",
                     extra=deleted.fields)
            return allowed("deleted")
        self._run_later(lambda: self.canceller.cancel_when_gone(deleted))
        return allowed("deleted", warnings=[f"FNTC will ask the FN to cancel task {task_id} "
                                            "once the Task is gone"])
