"""How each field of a Task spec is read and checked, and the grammars behind them.

Every reader here takes the raw spec (whatever the author wrote), appends a
sentence to ``problems`` for each thing the FN, the API server or git would
refuse, and returns the value in the form FNTC uses. The limits mirror the
CRD schema (k8s/crd.yaml): the mutating webhook runs before the API server
applies the schema, so anything the schema would refuse must be refused
here first, before an FN task is made for it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

#: The FN uses the task name for a pod name, so it must stay short and plain.
MAX_NAME_LENGTH = 50
#: Limits of the CRD schema (k8s/crd.yaml), checked here too.
MAX_IMAGE_LENGTH = 512
MAX_TEXT_LENGTH = 255
MAX_REPOSITORY_LENGTH = 140
MAX_OWNER_LENGTH = 39
MAX_BRANCH_LENGTH = 255
MAX_ITEMS = 64
MAX_ARGUMENT_LENGTH = 4096
#: The whole spec as compact JSON. The schema's per-field limits alone would let a
#: spec grow to megabytes (64 env values of 4 KiB, 64 arguments of 4 KiB), which the
#: API server and etcd may refuse only after the FN task exists.
MAX_SPEC_BYTES = 32 * 1024
#: Dataset ids travel to the FN as JSON numbers its database stores as integers.
MAX_DATASET_ID = 2**63 - 1

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


def shown(value: Any, limit: int = 80) -> str:
    """A user's value quoted for a message, cut short so a huge value cannot flood it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_kind(value: Any) -> str:
    """The JSON name of a value's type, as the author of the YAML thinks of it."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "an object" if isinstance(value, dict) else "a list"


def _string(spec: dict[str, Any], key: str, problems: list[str], *, max_length: int,
            label: str | None = None) -> str:
    """The stripped text of ``spec[key]``; "" when absent. A value that is not text, or
    is longer than the CRD allows, is a problem."""
    label = label or f"spec.{key}"
    value = spec.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.append(f"{label} must be a string, not {json_kind(value)} {shown(value)}")
        return ""
    if len(value) > max_length:
        problems.append(f"{label} is {len(value)} characters long; at most {max_length} "
                        "are allowed")
        return ""
    return value.strip()


def spec_size(spec: dict[str, Any], problems: list[str]) -> None:
    """Refuse a spec whose compact JSON is over :data:`MAX_SPEC_BYTES`."""
    try:
        size = len(json.dumps(spec, separators=(",", ":"), ensure_ascii=False).encode())
    except (ValueError, TypeError, RecursionError):
        problems.append("spec cannot be written back as JSON; keep it to plain values")
        return
    if size > MAX_SPEC_BYTES:
        problems.append(f"spec is {size} bytes long; at most {MAX_SPEC_BYTES} are allowed: "
                        "pass large inputs through the dataset, not the command or env")


# -- the image ---------------------------------------------------------------------------


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
    if tag == "latest":
        warnings.append("image tag 'latest' moves with every push; pin a digest "
                        "(@sha256:...) to run exactly this one")
    elif tag:
        warnings.append(f"image tag {shown(tag)} can be moved to another build; pin a digest "
                        "(@sha256:...) to run exactly this one")
    return Image(reference, registry, match["path"], tag, digest)


def image_field(spec: dict[str, Any], problems: list[str], warnings: list[str],
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


# -- names -------------------------------------------------------------------------------


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


# -- who, for which project and dataset --------------------------------------------------


def _github_id(user: dict[str, Any], problems: list[str]) -> str:
    raw = user.get("githubId")
    if raw is None or raw == "":
        return ""
    text = str(raw).strip() if isinstance(raw, (int, str)) and not isinstance(raw, bool) else ""
    if not (text.isascii() and text.isdigit() and 0 < int(text) <= MAX_DATASET_ID):
        problems.append(f"spec.user.githubId {shown(raw)} must be the numeric GitHub user id")
        return ""
    return text


def user_field(spec: dict[str, Any], problems: list[str]) -> tuple[str, str, str]:
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


def project_field(spec: dict[str, Any], problems: list[str]) -> str:
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


def dataset_field(value: Any, problems: list[str]) -> tuple[int | None, str | None]:
    """A dataset id, or else a dataset name."""
    text = value.strip() if isinstance(value, str) else None
    if value is None or text == "":
        problems.append("spec.dataset is required: a dataset id (a number) or a dataset name")
        return None, None
    if isinstance(value, str) and len(value) > MAX_TEXT_LENGTH:
        problems.append(f"spec.dataset is {len(value)} characters long; at most "
                        f"{MAX_TEXT_LENGTH} are allowed")
        return None, None
    if (isinstance(value, int) and not isinstance(value, bool)) or \
            (text and _INTEGER.match(text)):
        number = int(value)
        if not 0 < number <= MAX_DATASET_ID:
            problems.append(f"spec.dataset {shown(value)} must be a positive dataset id")
            return None, None
        return number, None
    if text:
        return None, text
    problems.append(f"spec.dataset {shown(value)} must be a dataset id (a number) or a "
                    "dataset name")
    return None, None


# -- where the results go ----------------------------------------------------------------


def repository_field(spec: dict[str, Any], problems: list[str]) -> str:
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


def branch_field(spec: dict[str, Any], problems: list[str]) -> str:
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


# -- what runs, and with what ------------------------------------------------------------


def command_field(spec: dict[str, Any], problems: list[str]) -> tuple[str, ...]:
    command = spec.get("command")
    if command is None:
        return ()
    if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
        problems.append("spec.command must be a list of strings")
        return ()
    if len(command) > MAX_ITEMS:
        problems.append(f"spec.command has {len(command)} items; at most {MAX_ITEMS} "
                        "are allowed")
    for index, part in enumerate(command):
        if len(part) > MAX_ARGUMENT_LENGTH:
            problems.append(f"spec.command[{index}] is {len(part)} characters long; at most "
                            f"{MAX_ARGUMENT_LENGTH} are allowed")
    return tuple(command)


def env_field(spec: dict[str, Any], problems: list[str]) -> dict[str, str]:
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
        name = str(key) if len(str(key)) <= 40 else shown(key, 40)
        if not isinstance(value, str):
            hint = f'; quote it, as in {name}: "{value}"' if len(str(value)) <= 40 else ""
            problems.append(f"spec.env value of {name} must be a string{hint}")
        elif len(value) > MAX_ARGUMENT_LENGTH:
            problems.append(f"spec.env value of {name} is {len(value)} characters long; "
                            f"at most {MAX_ARGUMENT_LENGTH} are allowed")
    return {str(key): value for key, value in env.items() if isinstance(value, str)}
