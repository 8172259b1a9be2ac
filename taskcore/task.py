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
#: Limits of the CRD schema (k8s/crd.yaml), checked here too; see review_spec.
MAX_IMAGE_LENGTH = 512
MAX_TEXT_LENGTH = 255
MAX_REPOSITORY_LENGTH = 140
MAX_OWNER_LENGTH = 39
MAX_BRANCH_LENGTH = 255
MAX_ITEMS = 64

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HOST_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
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
_HEADER_TEXT = re.compile(r"^[\x20-\x7e]+$")
_INTEGER = re.compile(r"^[-+]?[0-9]+$")


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


def shown(value: Any, limit: int = 80) -> str:
    """A user's value quoted for a message, cut short so a huge value cannot flood it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind(value: Any) -> str:
    """The JSON name of a value's type, as the author of the YAML thinks of it."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "an object" if isinstance(value, dict) else "a list"


def _string(spec: dict[str, Any], key: str, problems: list[str], *, max_length: int,
            label: str | None = None) -> str:
    """The stripped text of ``spec[key]``; "" when absent. A value that is not text, or
    is longer than the CRD allows, is a problem: the API server would refuse it only
    after this webhook had already submitted the FN task."""
    label = label or f"spec.{key}"
    value = spec.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.append(f"{label} must be a string, not {_kind(value)} {shown(value)}")
        return ""
    if len(value) > max_length:
        problems.append(f"{label} is {len(value)} characters long; at most {max_length} "
                        "are allowed")
        return ""
    return value.strip()


def parse_image(reference: str, problems: list[str], warnings: list[str]) -> Image | None:
    """Check an image against the FN's grammar and say why it would refuse it."""
    match = _IMAGE.match(reference)
    if not match:
        if "/" not in reference:
            problems.append(f"image {shown(reference)} has no registry: write it in full, "
                            "such as ghcr.io/org/image:1.0")
        else:
            problems.append(f"image {shown(reference)} is not a valid image reference "
                            "(registry/path:tag or registry/path@sha256:<64 hex>, "
                            "in lowercase)")
        return None
    registry, tag, digest = match["registry"], match["tag"], match["digest"]
    if match["port"]:
        problems.append(f"image {shown(reference)} names a registry with a port "
                        f"({registry}{match['port']}), which the Federated Node refuses: "
                        "use a registry address without a port")
        return None
    if "." not in registry and registry != "localhost":
        problems.append(f"image {shown(reference)} does not start with a registry host: "
                        f"write it in full, such as docker.io/{reference}")
        return None
    if not tag and not digest:
        problems.append(f"image {shown(reference)} has neither a tag nor a digest; "
                        "the Federated Node needs one of them, such as :1.0")
        return None
    if tag and digest:
        problems.append(f"image {shown(reference)} has both a tag and a digest, which the "
                        "Federated Node refuses: keep only the digest")
        return None
    if digest is None:
        if tag == "latest":
            warnings.append(f"image {shown(reference)} uses the tag 'latest', so the results "
                            "cannot be traced to one build: pin a version or a digest")
        else:
            warnings.append(f"image {shown(reference)} refers to a tag, which can be moved; "
                            "a digest (@sha256:...) pins exactly what runs")
    return Image(reference, registry, match["path"], tag, digest)


def check_branch(branch: str) -> str | None:
    """The reason ``branch`` is not a valid git branch name, or None."""
    if not branch or len(branch) > MAX_BRANCH_LENGTH:
        return f"must be 1 to {MAX_BRANCH_LENGTH} characters"
    if _REF_FORBIDDEN.search(branch):
        return "must not contain spaces, control characters or any of ~ ^ : ? * [ \\"
    if branch.startswith(("/", "-")) or branch.endswith(("/", ".")) or "//" in branch:
        return "must not start with / or -, end with / or ., or contain //"
    if ".." in branch or "@{" in branch or branch in ("@", "HEAD"):
        return "must not contain .. or @{, nor be @ or HEAD"
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
        return (f"the Task name {shown(name)} is {len(name)} characters long; the FN uses "
                f"it for a pod name, so keep it to {MAX_NAME_LENGTH}")
    if not _NAME.match(name):
        return (f"the Task name {shown(name)} can only hold lowercase letters, digits and "
                "'-' (no dots), since the FN uses it for a pod name")
    return None


def _image(spec: dict[str, Any], problems: list[str], warnings: list[str],
           allowed_registries: tuple[str, ...]) -> Image | None:
    before = len(problems)
    raw = _string(spec, "image", problems, max_length=MAX_IMAGE_LENGTH)
    if not raw:
        if len(problems) == before:
            problems.append("spec.image is required")
        return None
    image = parse_image(raw, problems, warnings)
    if image and allowed_registries and image.registry not in allowed_registries:
        problems.append(f"image registry {image.registry!r} is not allowed here; "
                        f"use one of: {', '.join(allowed_registries)}")
    return image


def _github_id(user: dict[str, Any], problems: list[str]) -> str:
    raw = user.get("githubId")
    if raw is None or raw == "":
        return ""
    text = str(raw).strip() if isinstance(raw, (int, str)) and not isinstance(raw, bool) else ""
    if not (text.isascii() and text.isdigit() and int(text) > 0):
        problems.append(f"spec.user.githubId {shown(raw)} must be the numeric GitHub user id")
        return ""
    return text


def _user(spec: dict[str, Any], problems: list[str]) -> tuple[str, str, str]:
    """username, email and GitHub id; a lookup only ever uses the first one present."""
    user = spec.get("user")
    if user is not None and not isinstance(user, dict):
        problems.append("spec.user must be an object with an email or a username")
        return "", "", ""
    user = user or {}
    before = len(problems)
    username = _string(user, "username", problems, max_length=MAX_TEXT_LENGTH,
                       label="spec.user.username")
    email = _string(user, "email", problems, max_length=MAX_TEXT_LENGTH,
                    label="spec.user.email")
    github_id = _github_id(user, problems)
    if not (username or email or github_id) and len(problems) == before:
        problems.append("spec.user needs an email or a username, to act for that researcher")
    if email and not _EMAIL.match(email):
        problems.append(f"spec.user.email {shown(email)} is not a valid email address")
    return username, email, github_id


def _project(spec: dict[str, Any], problems: list[str]) -> str:
    before = len(problems)
    project = _string(spec, "project", problems, max_length=MAX_TEXT_LENGTH)
    if not project:
        if len(problems) == before:
            problems.append("spec.project is required: the FN project whose dataset access "
                            "this Task uses")
    elif not _HEADER_TEXT.match(project):
        # The project travels to the FN in an HTTP header.
        problems.append(f"spec.project {shown(project)} may only hold printable ASCII "
                        "characters")
        return ""
    return project


def _repository(spec: dict[str, Any], problems: list[str]) -> str:
    """``owner/name`` from ``repository``, or from ``organization`` + ``repository``."""
    before = len(problems)
    raw = _string(spec, "repository", problems, max_length=MAX_REPOSITORY_LENGTH)
    organization = _string(spec, "organization", problems, max_length=MAX_OWNER_LENGTH)
    if not raw:
        if len(problems) == before:
            problems.append("spec.repository is required, as owner/name on GitHub")
        return ""
    if "/" not in raw:
        if not organization:
            problems.append(f"spec.repository {shown(raw)} needs its owner: write "
                            "owner/name, or set spec.organization")
            return ""
        raw = f"{organization}/{raw}"
    owner, _, name = raw.partition("/")
    if organization and organization.lower() != owner.lower():
        problems.append(f"spec.organization {shown(organization)} does not match the owner "
                        f"in spec.repository {shown(raw)}")
    if not _GITHUB_OWNER.match(owner):
        problems.append(f"spec.repository owner {shown(owner)} is not a valid GitHub "
                        "account name")
    if not _GITHUB_REPO.match(name) or name in (".", "..") or name.endswith(".git"):
        problems.append(f"spec.repository name {shown(name)} is not a valid GitHub "
                        "repository name (letters, digits, '.', '-', '_'; no .git suffix)")
    return raw


def _dataset(value: Any, problems: list[str]) -> tuple[int | None, str | None]:
    text = value.strip() if isinstance(value, str) else None
    if value is None or text == "":
        problems.append("spec.dataset is required: a dataset id (a number) or a dataset name")
        return None, None
    if (isinstance(value, int) and not isinstance(value, bool)) or \
            (text and _INTEGER.match(text)):
        number = int(value)
        if number <= 0:
            problems.append(f"spec.dataset {shown(value)} must be a positive dataset id")
            return None, None
        return number, None
    if text:
        return None, text
    problems.append(f"spec.dataset {shown(value)} must be a dataset id (a number) or a "
                    "dataset name")
    return None, None


def _branch(spec: dict[str, Any], problems: list[str]) -> str:
    before = len(problems)
    branch = _string(spec, "branch", problems, max_length=MAX_BRANCH_LENGTH)
    if len(problems) > before:
        return ""
    branch = branch or "main"
    branch_problem = check_branch(branch)
    if branch_problem:
        problems.append(f"spec.branch {shown(branch)} is not a valid git branch name: "
                        f"it {branch_problem}")
    return branch


def _command(spec: dict[str, Any], problems: list[str]) -> tuple[str, ...]:
    command = spec.get("command")
    if command is None:
        return ()
    if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
        problems.append("spec.command must be a list of strings")
        return ()
    if len(command) > MAX_ITEMS:
        problems.append(f"spec.command has {len(command)} items; at most {MAX_ITEMS} "
                        "are allowed")
    return tuple(command)


def _env(spec: dict[str, Any], problems: list[str]) -> dict[str, str]:
    env = spec.get("env")
    if env is None:
        return {}
    if not isinstance(env, dict):
        problems.append("spec.env must be a map of names to values")
        return {}
    if len(env) > MAX_ITEMS:
        problems.append(f"spec.env has {len(env)} entries; at most {MAX_ITEMS} are allowed")
    for key, value in env.items():
        if not _ENV_NAME.match(str(key)):
            problems.append(f"spec.env name {shown(key)} is not a valid environment "
                            "variable name")
        if not isinstance(value, str):
            problems.append(f"spec.env value of {key} must be a string; quote it, as in "
                            f"{key}: \"{value}\"")
    return {str(key): value for key, value in env.items() if isinstance(value, str)}


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

    name_problem = check_name(name)
    if name_problem:
        problems.append(name_problem)
    image = _image(spec, problems, warnings, allowed_registries)
    username, email, github_id = _user(spec, problems)
    project = _project(spec, problems)
    dataset_id, dataset_name = _dataset(spec.get("dataset"), problems)
    repository = _repository(spec, problems)
    branch = _branch(spec, problems)
    command = _command(spec, problems)
    env = _env(spec, problems)

    if not problems and image is not None:
        review.spec = TaskSpec(
            image=image, project=project, repository=repository, branch=branch,
            username=username, email=email, github_id=github_id,
            dataset_id=dataset_id, dataset_name=dataset_name, command=command, env=env,
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
