"""The Task custom resource: its names, its spec, and the checks on it.

The spec keeps the field names of the original controller so existing
templates still apply. Every check here is pure: it needs no network, so
the webhook can collect all problems of a spec in one answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

GROUP = "tasks.federatednode.com"
VERSION = "v1"
PLURAL = "tasks"
KIND = "Task"
API_VERSION = f"{GROUP}/{VERSION}"

#: Annotations the webhook sets at CREATE through its JSON patch.
TASK_ID_ANNOTATION = f"{GROUP}/task-id"
ADMISSION_UID_ANNOTATION = f"{GROUP}/admission-uid"
SUBMISSION_ANNOTATION = f"{GROUP}/submission"

#: The FN uses the task name for a pod name, so it must stay short and plain.
MAX_NAME_LENGTH = 50

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HOST_LABEL = r"[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?P<registry>{_HOST_LABEL}(?:\.{_HOST_LABEL})*)(?P<port>:[0-9]+)?"
    rf"/(?P<path>{_PATH_PART}(?:/{_PATH_PART})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_GITHUB_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
_GITHUB_REPO = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Image:
    """An image reference in the form the FN accepts."""

    reference: str
    registry: str
    path: str
    tag: str | None
    digest: str | None


@dataclass(frozen=True)
class TaskSpec:
    """A checked Task spec: every field here is known to be well formed."""

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


def parse_image(reference: str, problems: list[str], warnings: list[str]) -> Image | None:
    """Check an image against the FN's grammar and say why it would refuse it."""
    match = _IMAGE.match(reference)
    if not match:
        if "/" not in reference:
            problems.append(f"image {reference!r} has no registry: write it in full, "
                            "such as ghcr.io/org/image:1.0")
        else:
            problems.append(f"image {reference!r} is not a valid image reference "
                            "(registry/path:tag or registry/path@sha256:<64 hex>)")
        return None
    registry, tag, digest = match["registry"], match["tag"], match["digest"]
    if match["port"]:
        problems.append(f"image {reference!r} names a registry with a port "
                        f"({registry}{match['port']}), which the Federated Node refuses: "
                        "use a registry address without a port")
        return None
    if "." not in registry and registry != "localhost":
        problems.append(f"image {reference!r} does not start with a registry host: "
                        f"write it in full, such as docker.io/{reference}")
        return None
    if not tag and not digest:
        problems.append(f"image {reference!r} has neither a tag nor a digest; "
                        "the Federated Node needs one of them, such as :1.0")
        return None
    if digest is None:
        if tag == "latest":
            warnings.append(f"image {reference!r} uses the tag 'latest', so the results cannot "
                            "be traced to one build: pin a version or a digest")
        else:
            warnings.append(f"image {reference!r} refers to a tag, which can be moved; "
                            "a digest (@sha256:...) pins exactly what runs")
    return Image(reference, registry, match["path"], tag, digest)


def check_branch(branch: str) -> str | None:
    """The reason ``branch`` is not a valid git branch name, or None."""
    if not branch or len(branch) > 255:
        return "must be 1 to 255 characters"
    if _REF_FORBIDDEN.search(branch):
        return "must not contain spaces, control characters or any of ~ ^ : ? * [ \\"
    if branch.startswith(("/", "-")) or branch.endswith(("/", ".")) or "//" in branch:
        return "must not start with / or -, end with / or ., or contain //"
    if ".." in branch or "@{" in branch or branch == "@":
        return "must not contain .. or @{, nor be @"
    for part in branch.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return "no part may start with . or end with .lock"
    return None


def check_name(name: str) -> str | None:
    """Why a Task name cannot name an FN task (and so a pod), or None."""
    if not name:
        return ("metadata.name is required: generateName is not supported because "
                "the FN task and its results branch are named after the Task")
    if len(name) > MAX_NAME_LENGTH:
        return (f"the Task name {name!r} is {len(name)} characters long; the FN uses it "
                f"for a pod name, so keep it to {MAX_NAME_LENGTH}")
    if not _NAME.match(name):
        return (f"the Task name {name!r} can only hold lowercase letters, digits and '-' "
                "(no dots), since the FN uses it for a pod name")
    return None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _repository(spec: dict[str, Any], problems: list[str]) -> str:
    """``owner/name`` from ``repository``, or from ``organization`` + ``repository``."""
    raw = _text(spec.get("repository"))
    organization = _text(spec.get("organization"))
    if not raw:
        problems.append("spec.repository is required, as owner/name on GitHub")
        return ""
    if "/" not in raw:
        if not organization:
            problems.append(f"spec.repository {raw!r} needs its owner: write owner/name, "
                            "or set spec.organization")
            return ""
        raw = f"{organization}/{raw}"
    owner, _, name = raw.partition("/")
    if organization and organization.lower() != owner.lower():
        problems.append(f"spec.organization {organization!r} does not match the owner "
                        f"in spec.repository {raw!r}")
    if not _GITHUB_OWNER.match(owner):
        problems.append(f"spec.repository owner {owner!r} is not a valid GitHub account name")
    if not _GITHUB_REPO.match(name) or name in (".", "..") or name.endswith(".git"):
        problems.append(f"spec.repository name {name!r} is not a valid GitHub repository "
                        "name (letters, digits, '.', '-', '_'; no .git suffix)")
    return raw


def _dataset(value: Any, problems: list[str]) -> tuple[int | None, str | None]:
    if isinstance(value, bool) or value is None or value == "":
        problems.append("spec.dataset is required: a dataset id (a number) or a dataset name")
        return None, None
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
        if number <= 0:
            problems.append(f"spec.dataset {value!r} must be a positive dataset id")
            return None, None
        return number, None
    if isinstance(value, str) and value.strip():
        return None, value.strip()
    problems.append("spec.dataset must be a dataset id (a number) or a dataset name")
    return None, None


def review_spec(name: str, spec: Any, *,
                allowed_registries: tuple[str, ...] = ()) -> SpecReview:
    """Check everything about a Task that can be checked without asking anyone."""
    review = SpecReview()
    problems, warnings = review.problems, review.warnings
    if not isinstance(spec, dict):
        problems.append("spec is missing or is not an object")
        return review

    name_problem = check_name(name)
    if name_problem:
        problems.append(name_problem)

    image = None
    raw_image = _text(spec.get("image"))
    if not raw_image:
        problems.append("spec.image is required")
    else:
        image = parse_image(raw_image, problems, warnings)
        if image and allowed_registries and image.registry not in allowed_registries:
            problems.append(f"image registry {image.registry!r} is not allowed here; "
                            f"use one of: {', '.join(allowed_registries)}")

    user = spec.get("user") if isinstance(spec.get("user"), dict) else {}
    username, email = _text(user.get("username")), _text(user.get("email"))
    github_id = _text(str(user.get("githubId", "") or ""))
    if not (username or email or github_id):
        problems.append("spec.user needs an email or a username, to act for that researcher")
    if email and not _EMAIL.match(email):
        problems.append(f"spec.user.email {email!r} is not a valid email address")
    if github_id and not github_id.isdigit():
        problems.append(f"spec.user.githubId {github_id!r} must be the numeric GitHub user id")

    project = _text(spec.get("project"))
    if not project:
        problems.append("spec.project is required: the FN project whose dataset access "
                        "this Task uses")

    dataset_id, dataset_name = _dataset(spec.get("dataset"), problems)
    repository = _repository(spec, problems)

    branch = _text(spec.get("branch")) or "main"
    branch_problem = check_branch(branch)
    if branch_problem:
        problems.append(f"spec.branch {branch!r} is not a valid git branch name: "
                        f"it {branch_problem}")

    command = spec.get("command") or []
    if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
        problems.append("spec.command must be a list of strings")
        command = []
    env = spec.get("env") or {}
    if not isinstance(env, dict):
        problems.append("spec.env must be a map of names to values")
        env = {}
    for key in env:
        if not _ENV_NAME.match(str(key)):
            problems.append(f"spec.env name {key!r} is not a valid environment variable name")

    if not problems and image is not None:
        review.spec = TaskSpec(
            image=image, project=project, repository=repository, branch=branch,
            username=username, email=email, github_id=github_id,
            dataset_id=dataset_id, dataset_name=dataset_name, command=tuple(command),
            env={str(key): str(value) for key, value in env.items()},
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
