"""The checks the Federated Node runs on a task body, before creating anything.

``POST /tasks`` and ``POST /tasks/validate`` share them. The status codes are
the FN's, odd ones included: some malformed bodies crash its handler and come
back as ``500 Internal Error`` rather than a 400, and an image missing from
the allow-list is a 500 too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from standins.fn_state import FNState, ImageBehaviour

#: ``registry/path:tag`` or ``registry/path@sha256:<64 hex>``; no ``:port`` on the registry.
IMAGE_PATTERN = re.compile(
    r"^(?P<registry>[a-z0-9]+(?:[.-][a-z0-9]+)*)"
    r"/(?P<path>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@(?P<digest>sha256:[a-f0-9]{64}))$")

QUANTITY_PATTERN = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<suffix>[a-zA-Z]*)$")
QUANTITY_SUFFIXES = {
    "": Decimal(1), "m": Decimal("0.001"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


class FNRefusal(Exception):
    """The FN answers ``status`` with ``body`` instead of going on."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def refusal(status: int, message: str) -> FNRefusal:
    return FNRefusal(status, {"error": message})


def internal_error() -> FNRefusal:
    """What the FN answers where its handler crashes on the input."""
    return refusal(500, "Internal Error")


@dataclass(frozen=True)
class Caller:
    """The user behind a request: Keycloak id, email, and whether an FN admin."""

    user_id: str
    email: str
    is_admin: bool


@dataclass
class Submission:
    """A task body that passed every check, with its dataset resolved."""

    name: str
    image: str
    behaviour: ImageBehaviour
    dataset_id: int
    executors: list[dict]
    tags: dict
    inputs: dict
    outputs: dict
    resources: dict
    description: str | None
    task_controller: bool | None
    db_query: dict | None
    repository: str | None


def check_submission(state: FNState, body: object, caller: Caller,
                     project_name: str | None) -> Submission:
    """Run the FN's checks in the FN's order; raise :class:`FNRefusal` on the first failure."""
    if not isinstance(body, dict):
        raise internal_error()
    name = str(body.get("name") or "").replace(" ", "")
    if not name:
        raise refusal(400, "name is a mandatory field")

    executors = _executors(body.get("executors"))
    inputs = _object_field(body, "inputs")
    outputs = _object_field(body, "outputs")
    resources = _resources(body.get("resources"))
    image = executors[0]["image"]
    behaviour = _allowed_image(state, image)
    tags = body.get("tags") or {}
    if not isinstance(tags, dict):
        raise internal_error()
    tags = {key: value for key, value in tags.items() if key in ("dataset_id", "dataset_name")}

    repository = body.get("repository")
    repository_dataset = None
    if repository:
        with state.lock:
            repository_dataset = state.repositories.get(str(repository))
        if repository_dataset is None:
            raise refusal(400, f"No datasets linked with the repository {repository}")
    if caller.is_admin:
        dataset_id = (repository_dataset if repository_dataset is not None
                      else _dataset_from_tags(state, tags))
    else:
        dataset_id = _dataset_from_project(state, caller, project_name)

    db_query = body.get("db_query")
    if db_query is not None and not (isinstance(db_query, dict) and "query" in db_query):
        raise refusal(400, "db_query needs a query and a dialect")
    task_controller = body.get("task_controller")
    description = body.get("description")
    return Submission(
        name=name, image=image, behaviour=behaviour, dataset_id=dataset_id,
        executors=executors, tags=tags, inputs=inputs, outputs=outputs, resources=resources,
        description=None if description is None else str(description),
        task_controller=None if task_controller is None else bool(task_controller),
        db_query=db_query, repository=None if repository is None else str(repository))


def _executors(executors: object) -> list[dict]:
    # The FN indexes executors[0] without checking: anything but a non-empty
    # list of objects crashes it.
    if not isinstance(executors, list) or not executors or not isinstance(executors[0], dict):
        raise internal_error()
    first = dict(executors[0])
    if not isinstance(first.get("image"), str) or not first["image"]:
        raise refusal(400, "image is a mandatory field")
    command = first.get("command")
    if command is not None and not (isinstance(command, list)
                                    and all(isinstance(part, str) for part in command)):
        raise refusal(400, "command must be a list of strings")
    env = first.get("env") or {}
    if not isinstance(env, dict):
        raise refusal(400, "env must be an object")
    first["env"] = {key: str(value) for key, value in env.items()}
    return [first]


def _object_field(body: dict, key: str) -> dict:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise refusal(400, f"{key} must be an object")
    return value


def _quantity(value: object) -> Decimal:
    if not isinstance(value, str):
        raise internal_error()
    match = QUANTITY_PATTERN.match(value.strip())
    if match is None or match["suffix"] not in QUANTITY_SUFFIXES:
        raise refusal(400, f"Invalid resource quantity {value}")
    try:
        return Decimal(match["number"]) * QUANTITY_SUFFIXES[match["suffix"]]
    except InvalidOperation as error:
        raise refusal(400, f"Invalid resource quantity {value}") from error


def _resources(resources: object) -> dict:
    if resources is None:
        return {}
    if not isinstance(resources, dict):
        raise refusal(400, "resources must be an object")
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    if not isinstance(limits, dict) or not isinstance(requests, dict):
        raise internal_error()
    parsed_limits = {key: _quantity(value) for key, value in limits.items()}
    parsed_requests = {key: _quantity(value) for key, value in requests.items()}
    for key, limit in parsed_limits.items():
        if key in parsed_requests and limit < parsed_requests[key]:
            raise refusal(400, f"The {key} limit cannot be lower than its request")
    return resources


def _allowed_image(state: FNState, image: str) -> ImageBehaviour:
    match = IMAGE_PATTERN.match(image)
    if match is None:
        raise refusal(400, f"Image {image} does not have a tag or is malformed")
    with state.lock:
        if match["registry"] not in state.registries:
            raise refusal(400, f"Registry {match['registry']} is not registered on this node")
        versions = state.images.get(f"{match['registry']}/{match['path']}", {})
        behaviour = versions.get(match["tag"] or match["digest"])
    if behaviour is None:
        raise refusal(500, f"Image {image} could not be found")
    return behaviour


def _dataset_from_tags(state: FNState, tags: dict) -> int:
    raw_id = tags.get("dataset_id")
    raw_name = tags.get("dataset_name")
    if raw_id is None and raw_name is None:
        raise refusal(400, "Admins must name the dataset in tags (dataset_id or dataset_name)")
    with state.lock:
        if raw_id is not None:
            try:
                dataset_id = int(raw_id)
            except (TypeError, ValueError):
                raise refusal(404, f"Dataset {raw_id} does not exist") from None
            if dataset_id not in state.datasets or isinstance(raw_id, bool):
                raise refusal(404, f"Dataset {raw_id} does not exist")
            if raw_name is not None and state.datasets[dataset_id] != raw_name:
                raise refusal(404, f"Dataset {raw_name} does not exist")
            return dataset_id
        found = state.dataset_by_name(str(raw_name))
    if found is None:
        raise refusal(404, f"Dataset {raw_name} does not exist")
    return found


def _dataset_from_project(state: FNState, caller: Caller, project_name: str | None) -> int:
    if not project_name:
        raise refusal(400, "User does not belong to a valid project")
    with state.lock:
        project = state.projects.get(project_name)
        if project is None:
            raise refusal(400, "Could not find project")
        if caller.email.lower() not in {member.lower() for member in project.members}:
            raise refusal(400, "User does not belong to a valid project")
        return project.dataset_id
