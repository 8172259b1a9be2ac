"""The Task custom resource: its names, its checked spec, and the marker tying it to
its FN task.

The spec keeps the field names of the original controller so existing
templates still apply. :func:`review_spec` runs every check that needs no
network (the field checks live in :mod:`taskcore.spec_fields` and
:mod:`taskcore.resources`), so the webhook can collect all problems of a
spec in one answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .resources import resources_field
from .spec_fields import (Image, branch_field, check_name, command_field, dataset_field,
                          env_field, image_field, project_field, repository_field,
                          spec_size, user_field)

GROUP = "tasks.federatednode.com"
VERSION = "v1"
PLURAL = "tasks"
KIND = "Task"
API_VERSION = f"{GROUP}/{VERSION}"

#: Annotations the webhook sets at CREATE through its JSON patch.
TASK_ID_ANNOTATION = f"{GROUP}/task-id"
ADMISSION_UID_ANNOTATION = f"{GROUP}/admission-uid"
SUBMISSION_ANNOTATION = f"{GROUP}/submission"


@dataclass(frozen=True)
class TaskSpec:
    """A checked Task spec: every field here is known to be well formed.

    ``resources`` holds ``limits`` and ``requests`` of ``cpu`` and ``memory``,
    each a Kubernetes quantity as text.
    """

    image: Image
    project: str
    repository: str
    branch: str
    username: str = ""
    email: str = ""
    github_id: str = ""
    dataset_id: int | None = None
    dataset_name: str | None = None
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    resources: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return str(self.dataset_id) if self.dataset_id is not None else str(self.dataset_name)

    @property
    def requester(self) -> str:
        """The researcher as a person reads it: email first, else username."""
        return self.email or self.username or f"GitHub user {self.github_id}"


@dataclass
class SpecReview:
    """The outcome of checking a spec: problems refuse it, warnings do not."""

    spec: TaskSpec | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def review_spec(name: str, spec: Any, *,
                allowed_registries: tuple[str, ...] = ()) -> SpecReview:
    """Check everything about a Task that can be checked without asking anyone.

    Every problem is collected, so one answer tells the author all that is wrong.
    The checks include the CRD schema's own limits: the mutating webhook runs
    before the API server applies the schema, so a spec the schema refuses
    would otherwise be submitted to the FN first.
    """
    review = SpecReview()
    problems, warnings = review.problems, review.warnings
    if not isinstance(spec, dict):
        problems.append("spec is missing or is not an object")
        return review

    spec_size(spec, problems)
    name_problem = check_name(name)
    if name_problem:
        problems.append(name_problem)
    image = image_field(spec, problems, warnings, allowed_registries)
    username, email, github_id = user_field(spec, problems)
    project = project_field(spec, problems)
    dataset_id, dataset_name = dataset_field(spec.get("dataset"), problems)
    repository = repository_field(spec, problems)
    branch = branch_field(spec, problems)
    command = command_field(spec, problems)
    env = env_field(spec, problems)
    resources = resources_field(spec, problems)

    if not problems and image is not None:
        review.spec = TaskSpec(
            image=image, project=project, repository=repository, branch=branch,
            username=username, email=email, github_id=github_id,
            dataset_id=dataset_id, dataset_name=dataset_name, command=command, env=env,
            resources=resources,
        )
    return review


@dataclass(frozen=True)
class Marker:
    """Ties an FN task to the Task it was made for, so either can find the other.

    It is written into the FN task's description, which the FN keeps and lets
    an admin filter on.
    """

    cluster: str
    namespace: str
    name: str
    uid: str

    PREFIX = "fntc:v1"

    def __str__(self) -> str:
        return (f"{self.PREFIX} cluster={self.cluster} namespace={self.namespace} "
                f"task={self.name} uid={self.uid}")

    @classmethod
    def parse(cls, text: Any) -> "Marker | None":
        if not isinstance(text, str) or not text.startswith(cls.PREFIX + " "):
            return None
        fields = dict(part.partition("=")[::2] for part in text.split()[1:])
        try:
            return cls(fields["cluster"], fields["namespace"], fields["task"], fields["uid"])
        except KeyError:
            return None

    def names_same_task(self, other: "Marker") -> bool:
        """Whether both markers name one Task (namespace, name and admission uid). The
        cluster name is left out: it is a setting, and may have been renamed since."""
        return (self.namespace, self.name, self.uid) == (other.namespace, other.name,
                                                         other.uid)
