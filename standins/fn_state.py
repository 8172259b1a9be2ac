"""What the Federated Node stand-in knows: datasets, projects, images and tasks.

A task's life is not simulated by a background loop: its status is computed
from the clock each time it is read, from the time it was created and the
behaviour of the image it runs. Tests move a :class:`ManualClock` forward and
the task moves through ``scheduled``, ``running`` and ``terminated`` with it.
"""

from __future__ import annotations

import io
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime

from standins.clock import Clock

#: The digest of ``ghcr.io/fntc-sandbox/analytics`` that behaves like tag 1.0.
ANALYTICS_DIGEST = "sha256:" + "5f3e9c1a7b2d4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7"
ANALYTICS_IMAGE = "ghcr.io/fntc-sandbox/analytics"

RESULTS_EXPIRED = "Tasks results are not available anymore. Please, run the task again"
PENDING_REVIEW = "Pending Review"
APPROVED_RELEASE = "Approved Release"
BLOCKED_RELEASE = "Blocked Release"


@dataclass
class ImageBehaviour:
    """How a task running this image behaves, measured from its creation.

    The task is ``scheduled`` for ``schedule_seconds``, then runs for
    ``run_seconds`` and terminates with ``exit_code`` and ``reason``. With
    ``waiting`` it never starts (an image that cannot be pulled); with
    ``evicted`` its pod disappears once it has run (``deleted``).
    ``results`` are the files of output ``results`` once it has terminated.
    """

    exit_code: int = 0
    reason: str = "Completed"
    schedule_seconds: float = 2.0
    run_seconds: float = 5.0
    results: dict[str, bytes] = field(default_factory=dict)
    waiting: bool = False
    evicted: bool = False
    logs: list[str] = field(default_factory=lambda: ["Starting analysis",
                                                     "Analysis finished"])


@dataclass
class FNRequest:
    """One request the stand-in received (no headers, so no token)."""

    method: str
    path: str
    status: int = 0


@dataclass
class Project:
    """A project with an approved data access request for one dataset."""

    dataset_id: int
    members: set[str]


@dataclass
class FNTask:
    """A task as the FN stores it, plus what the stand-in needs to play it out."""

    id: int
    name: str
    docker_image: str
    description: str | None
    task_controller: bool | None
    requested_by: str
    owner_email: str
    dataset_id: int
    created_at: datetime
    updated_at: datetime
    behaviour: ImageBehaviour
    executors: list[dict]
    tags: dict
    inputs: dict
    outputs: dict
    resources: dict
    db_query: dict | None = None
    repository: str | None = None
    review_required: bool = False
    review: bool | None = None
    cancelled_at: datetime | None = None

    def status(self, now: datetime) -> str | dict:
        """The ``status`` field, read "live" as the FN reads it from the pod."""
        if self.cancelled_at is not None:
            return "cancelled"
        behaviour = self.behaviour
        started = self.created_at + timedelta(seconds=behaviour.schedule_seconds)
        finished = started + timedelta(seconds=behaviour.run_seconds)
        if now < started:
            return "scheduled"
        if behaviour.waiting:
            return "waiting"
        if now < finished:
            return {"running": {"started_at": http_date(started)}}
        if behaviour.evicted:
            return "deleted"
        return {"terminated": {"started_at": http_date(started),
                               "finished_at": http_date(finished),
                               "exit_code": behaviour.exit_code,
                               "reason": behaviour.reason}}

    def logs(self, now: datetime) -> list[str] | str:
        """What ``GET /tasks/{id}/logs`` shows: "Task queued" until the container starts."""
        until = self.cancelled_at or now
        started = self.created_at + timedelta(seconds=self.behaviour.schedule_seconds)
        if until < started or self.behaviour.waiting:
            return "Task queued"
        return list(self.behaviour.logs)

    def review_status(self) -> str | bool | None:
        if not self.review_required:
            return self.review
        if self.review is None:
            return PENDING_REVIEW
        return APPROVED_RELEASE if self.review else BLOCKED_RELEASE

    def view(self, now: datetime) -> dict:
        """The task as ``GET /tasks/{id}`` shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "docker_image": self.docker_image,
            "description": self.description,
            "status": self.status(now),
            "created_at": fn_time(self.created_at),
            "updated_at": fn_time(self.updated_at),
            "requested_by": self.requested_by,
            "dataset_id": self.dataset_id,
            "review_status": self.review_status(),
        }

    def results_files(self, now: datetime) -> dict[str, bytes]:
        """What output ``results`` holds right now: nothing until the task has terminated."""
        status = self.status(now)
        if isinstance(status, dict) and "terminated" in status:
            return dict(self.behaviour.results)
        return {}


@dataclass
class FNState:
    """The FN stand-in's whole world, guarded by ``lock``.

    ``images`` maps a repository (``registry/path``) on the allow-list to its
    tags and digests (``sha256:...``) and their behaviour. ``repositories``
    maps an ``org/repo`` name to the dataset linked with it.
    ``submissions`` lists created tasks in order, ``cancels`` every cancel
    call with the status it got and ``requests`` every request, so tests can
    count what reached the FN.
    """

    clock: Clock
    keycloak_url: str
    client_secret: str
    node_name: str = "sandbox-node"
    realm: str = "FederatedNode"
    client_id: str = "global"
    datasets: dict[int, str] = field(default_factory=dict)
    projects: dict[str, Project] = field(default_factory=dict)
    repositories: dict[str, int] = field(default_factory=dict)
    registries: set[str] = field(default_factory=set)
    images: dict[str, dict[str, ImageBehaviour]] = field(default_factory=dict)
    tasks: dict[int, FNTask] = field(default_factory=dict)
    review_enabled: bool = False
    results_format: str = "zip"
    results_ttl: timedelta = timedelta(days=3)
    submissions: list[FNTask] = field(default_factory=list)
    cancels: list[tuple[int, int]] = field(default_factory=list)
    requests: list[FNRequest] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    next_task_id: int = 1

    def dataset_by_name(self, name: str) -> int | None:
        return next((dataset_id for dataset_id, dataset_name in self.datasets.items()
                     if dataset_name == name), None)

    def add_task(self, task: FNTask) -> FNTask:
        with self.lock:
            task.id = self.next_task_id
            self.next_task_id += 1
            self.tasks[task.id] = task
            self.submissions.append(task)
            return task


def fn_time(moment: datetime) -> str:
    """The FN's own timestamp format (``created_at``, ``updated_at``)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def http_date(moment: datetime) -> str:
    """RFC 1123, as the FN renders container state times."""
    return format_datetime(moment, usegmt=True)


def results_zip(files: dict[str, bytes]) -> bytes:
    """The files of output ``results`` at the root of a zip (possibly empty)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in sorted(files.items()):
            archive.writestr(name, content)
    return buffer.getvalue()


def results_tarball(files: dict[str, bytes], moment: datetime) -> bytes:
    """What older FN releases sent: the whole output folder as a gzip tarball."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in sorted(files.items()):
            entry = tarfile.TarInfo(f"results/{name}")
            entry.size = len(content)
            entry.mtime = int(moment.timestamp())
            archive.addfile(entry, io.BytesIO(content))
    return buffer.getvalue()


SUMMARY_CSV = (b"measure,value\n"
               b"patients,1284\n"
               b"median_age,61\n"
               b"five_year_survival_pct,67.3\n")
REPORT_MD = (b"# Cancer registry summary\n\n"
             b"Aggregate counts only; cells under 10 are suppressed.\n\n"
             b"- Patients: 1284\n- Median age at diagnosis: 61\n")


def default_fn_state(clock: Clock, keycloak_url: str) -> FNState:
    """The sandbox node the demo and the product's tests rely on."""
    def completed() -> ImageBehaviour:
        return ImageBehaviour(results={"summary.csv": SUMMARY_CSV, "report.md": REPORT_MD},
                              logs=["Loading cancer-registry", "Computing summary",
                                    "Wrote summary.csv and report.md"])

    analytics = {
        "1.0": completed(),
        "latest": completed(),
        ANALYTICS_DIGEST: completed(),
        "crash": ImageBehaviour(exit_code=1, reason="Error",
                                logs=["Loading cancer-registry",
                                      "ValueError: column 'age' not found"]),
        "oom": ImageBehaviour(exit_code=137, reason="OOMKilled",
                              logs=["Loading cancer-registry"]),
        "pull-error": ImageBehaviour(waiting=True, logs=[]),
        "evicted": ImageBehaviour(evicted=True, logs=["Loading cancer-registry"]),
    }
    return FNState(
        clock=clock,
        keycloak_url=keycloak_url,
        client_secret="sandbox-client-secret",
        datasets={1: "cancer-registry", 2: "hospital-admissions"},
        projects={
            "project1": Project(1, {"alice@example.org", "carol@example.org"}),
            "project2": Project(2, {"bob@example.org"}),
        },
        registries={"ghcr.io", "docker.io"},
        images={ANALYTICS_IMAGE: analytics},
    )
