"""Task specs applied through the real API server: admitted, or refused with the exact
sentence kubectl prints, and the warnings it shows.

Every case is applied once, all in parallel, into one namespace (each under its own
Task name); the parametrized tests then check one case each.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from devenv.stack import LocalStack
from standins.fn_state import ANALYTICS_DIGEST, ANALYTICS_IMAGE
from standins.sandbox import Sandbox
from taskcore.spec_fields import shown
from tests.conftest import task_manifest

DIGEST_IMAGE = f"{ANALYTICS_IMAGE}@{ANALYTICS_DIGEST}"
TAGGED_IMAGE = f"{ANALYTICS_IMAGE}:1.0"
DENIED = 'admission webhook "submit.tasks.federatednode.com" denied the request: '
NOT_KNOWN = "; the Task must name a researcher known to the Federated Node"
FN_REFUSED = "Task refused: the Federated Node refused the task: "
NOT_ALLOWED = (" is not on the FN's allow-list or its tag does not exist; use an allowed "
               "image, or ask the FN operators to allow this one")
BOB = {"user": {"username": "bob"}, "project": "project2", "dataset": 2,
       "repository": "fntc-sandbox/admissions-study"}


@dataclass(frozen=True)
class Case:
    """One Task spec and what the API server must answer.

    ``refused`` is the webhook's whole message, None when the Task is admitted.
    ``spec`` overrides alice's valid Task (pinned by digest, so it warns of
    nothing); ``drop`` removes fields; ``name`` replaces the Task name.
    """

    id: str
    spec: dict[str, Any] = field(default_factory=dict)
    refused: str | None = None
    warnings: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    name: str | None = None
    generate_name: bool = False


def tag_warning(tag: str) -> str:
    return (f"image tag {tag!r} can be moved to another build; pin a digest (@sha256:...) to "
            "run exactly this one")


def spec_bytes(**spec: Any) -> int:
    """The size of alice's Task spec with ``spec`` over it, as compact JSON."""
    body = task_manifest("size", "size", **{"image": DIGEST_IMAGE, **spec})["spec"]
    return len(json.dumps(body, separators=(",", ":")).encode())


LARGE_ENV = {f"PART_{index}": "z" * 4000 for index in range(9)}
RESOURCES = {"limits": {"cpu": "1", "memory": "1Gi"},
             "requests": {"cpu": "500m", "memory": "512Mi"}}


CASES = [
    # -- admitted ------------------------------------------------------------------------
    Case("digest"),
    Case("tag", {"image": TAGGED_IMAGE}, warnings=(tag_warning("1.0"),)),
    Case("latest-tag", {"image": f"{ANALYTICS_IMAGE}:latest"}, warnings=(
        "image tag 'latest' moves with every push; pin a digest (@sha256:...) to run "
        "exactly this one",)),
    Case("dataset-by-name", {"dataset": "cancer-registry"}, warnings=(
        "the FN runs this task on dataset 1, the one project1 grants; FNTC cannot check "
        "that it is the dataset named 'cancer-registry'",)),
    Case("dataset-id-as-text", {"dataset": "1"}),
    Case("user-by-username", BOB),
    Case("user-by-email-and-username",
         {**BOB, "user": {"email": "bob@example.org", "username": "bob"}}),
    Case("user-by-github-id", {"user": {"githubId": 5551234}}),
    Case("user-by-github-id-text", {"user": {"githubId": "5551234"}}),
    Case("email-in-other-case", {"user": {"email": "Alice@Example.ORG"}}),
    Case("organization-and-name", {"organization": "fntc-sandbox",
                                   "repository": "cancer-study"}),
    Case("nested-branch", {"branch": "feature/results-v2"}),
    Case("command-and-env", {"command": ["python", "summary.py"], "env": {"MODE": "full"}}),
    Case("longest-name", name="n" * 50),
    Case("resources", {"resources": RESOURCES}),
    Case("resources-as-numbers", {"resources": {"limits": {"cpu": 2},
                                                "requests": {"cpu": 1}}}),
    Case("largest-arguments", {"command": ["x" * 4096], "env": {"QUERY": "y" * 4096}}),
    Case("dataset-not-granted", {"dataset": 99}, warnings=(
        "the FN runs this task on dataset 1, the one project1 grants, not 99",)),

    # -- refused by FNTC's own checks ------------------------------------------------------
    Case("image-without-registry", {"image": "analytics:1.0"},
         "Task refused: image 'analytics:1.0' has no registry: write it in full, such as "
         "ghcr.io/org/image:1.0"),
    Case("image-without-registry-host", {"image": "fntc-sandbox/analytics:1.0"},
         "Task refused: image 'fntc-sandbox/analytics:1.0' does not start with a registry "
         "host: write it in full, such as docker.io/fntc-sandbox/analytics:1.0"),
    Case("image-registry-with-port", {"image": "ghcr.io:5000/fntc-sandbox/analytics:1.0"},
         "Task refused: image 'ghcr.io:5000/fntc-sandbox/analytics:1.0' names a registry with "
         "a port (ghcr.io:5000), which the Federated Node refuses: use a registry address "
         "without a port"),
    Case("image-without-tag", {"image": ANALYTICS_IMAGE},
         f"Task refused: image '{ANALYTICS_IMAGE}' has neither a tag nor a digest; the "
         "Federated Node needs one of them, such as :1.0"),
    Case("image-with-tag-and-digest", {"image": f"{ANALYTICS_IMAGE}:1.0@{ANALYTICS_DIGEST}"},
         f"Task refused: image {shown(f'{ANALYTICS_IMAGE}:1.0@{ANALYTICS_DIGEST}')} has both "
         "a tag and a digest, which the Federated Node refuses: keep only the digest"),
    Case("image-in-uppercase", {"image": "ghcr.io/FNTC/analytics:1.0"},
         "Task refused: image 'ghcr.io/FNTC/analytics:1.0' is not a valid image reference "
         "(registry/path:tag or registry/path@sha256:<64 hex>, in lowercase)"),
    Case("image-a-number", {"image": 1}, "Task refused: spec.image must be a string, not a "
                                         "number 1"),
    Case("image-too-long", {"image": "ghcr.io/fntc-sandbox/" + "a" * 500 + ":1.0"},
         "Task refused: spec.image is 525 characters long; at most 512 are allowed"),
    Case("user-missing", drop=("user",),
         refused="Task refused: spec.user needs an email or a username, to act for that "
                 "researcher"),
    Case("user-empty", {"user": {}},
         "Task refused: spec.user needs an email or a username, to act for that researcher"),
    Case("email-malformed", {"user": {"email": "alice-at-example.org"}},
         "Task refused: spec.user.email 'alice-at-example.org' is not a valid email address"),
    Case("github-id-not-numeric", {"user": {"githubId": "carol-gh"}},
         "Task refused: spec.user.githubId 'carol-gh' must be the numeric GitHub user id"),
    Case("project-empty", {"project": ""},
         "Task refused: spec.project is required: the FN project whose dataset access this "
         "Task uses"),
    Case("project-not-ascii", {"project": "projét"},
         "Task refused: spec.project 'projét' may only hold printable ASCII characters"),
    Case("dataset-zero", {"dataset": 0}, "Task refused: spec.dataset 0 must be a positive "
                                         "dataset id"),
    Case("dataset-negative", {"dataset": -1}, "Task refused: spec.dataset -1 must be a "
                                              "positive dataset id"),
    Case("dataset-fraction", {"dataset": 1.5},
         "Task refused: spec.dataset 1.5 must be a dataset id (a number) or a dataset name"),
    Case("repository-without-owner", {"repository": "cancer-study"},
         "Task refused: spec.repository 'cancer-study' needs its owner: write owner/name, or "
         "set spec.organization"),
    Case("repository-owner-invalid", {"repository": "-fntc/cancer-study"},
         "Task refused: spec.repository owner '-fntc' is not a valid GitHub account name"),
    Case("repository-git-suffix", {"repository": "fntc-sandbox/cancer-study.git"},
         "Task refused: spec.repository name 'cancer-study.git' is not a valid GitHub "
         "repository name (letters, digits, '.', '-', '_'; no .git suffix)"),
    Case("organization-mismatch", {"organization": "someone-else"},
         "Task refused: spec.organization 'someone-else' does not match the owner in "
         "spec.repository 'fntc-sandbox/cancer-study'"),
    Case("branch-with-dots", {"branch": "results..v2"},
         "Task refused: spec.branch 'results..v2' is not a valid git branch name: it must "
         "not contain .. or @{, nor be @ or HEAD"),
    Case("branch-with-space", {"branch": "my results"},
         "Task refused: spec.branch 'my results' is not a valid git branch name: it must not "
         "contain spaces, control characters or any of ~ ^ : ? * [ \\"),
    Case("branch-lock-suffix", {"branch": "results.lock"},
         "Task refused: spec.branch 'results.lock' is not a valid git branch name: it no "
         "part may start with . or end with .lock"),
    Case("command-not-strings", {"command": [1, 2]},
         "Task refused: spec.command must be a list of strings"),
    Case("env-name-invalid", {"env": {"1MODE": "x"}},
         "Task refused: spec.env name '1MODE' is not a valid environment variable name"),
    Case("env-value-a-number", {"env": {"RUNS": 3}},
         'Task refused: spec.env value of RUNS must be a string; quote it, as in RUNS: "3"'),
    Case("command-item-too-long", {"command": ["python", "x" * 4097]},
         "Task refused: spec.command[1] is 4097 characters long; at most 4096 are allowed"),
    Case("env-value-too-long", {"env": {"QUERY": "y" * 4097}},
         "Task refused: spec.env value of QUERY is 4097 characters long; at most 4096 are "
         "allowed"),
    Case("dataset-name-too-long", {"dataset": "d" * 256},
         "Task refused: spec.dataset is 256 characters long; at most 255 are allowed"),
    Case("spec-too-large", {"env": LARGE_ENV},
         f"Task refused: spec is {spec_bytes(env=LARGE_ENV)} bytes long; at most 32768 are "
         "allowed: pass large inputs through the dataset, not the command or env"),
    Case("resources-not-a-quantity", {"resources": {"limits": {"memory": "1GB"}}},
         "Task refused: spec.resources.limits.memory '1GB' is not a Kubernetes quantity such "
         "as 500m, 2 or 1Gi"),
    Case("resources-limit-below-request",
         {"resources": {"limits": {"memory": "512Mi"}, "requests": {"memory": "1Gi"}}},
         "Task refused: spec.resources.limits.memory 512Mi is below its request 1Gi; a limit "
         "must be at least the request"),
    Case("name-with-dot", name="sum.mary",
         refused="Task refused: the Task name 'sum.mary' can only hold lowercase letters, "
                 "digits and '-' (no dots), since the FN uses it for a pod name"),
    Case("name-too-long", name="n" * 51,
         refused=f"Task refused: the Task name '{'n' * 51}' is 51 characters long; the FN "
                 "uses it for a pod name, so keep it to 50"),
    Case("generate-name", generate_name=True,
         refused="Task refused: metadata.name is required: generateName is not supported "
                 "because the FN task and its results branch are named after the Task"),
    Case("every-problem-at-once",
         {"image": "analytics:latest", "user": {"email": "x"}, "dataset": 0,
          "branch": "a..b"},
         "Task refused: image 'analytics:latest' has no registry: write it in full, such as "
         "ghcr.io/org/image:1.0; spec.user.email 'x' is not a valid email address; "
         "spec.dataset 0 must be a positive dataset id; spec.branch 'a..b' is not a valid "
         "git branch name: it must not contain .. or @{, nor be @ or HEAD"),

    # -- refused because of who the Task names ---------------------------------------------
    Case("user-unknown", {"user": {"email": "mallory@example.org"}},
         "Task refused: no Keycloak user mallory@example.org exists in realm FederatedNode"
         + NOT_KNOWN),
    Case("user-disabled", {"user": {"email": "dave@example.org"}},
         "Task refused: the Keycloak user dave@example.org is disabled" + NOT_KNOWN),
    Case("email-and-username-disagree",
         {"user": {"email": "alice@example.org", "username": "bob"}},
         "Task refused: the Keycloak user with email alice@example.org has username "
         "'alice@example.org', not 'bob'" + NOT_KNOWN),
    Case("username-unknown", {"user": {"username": "zed"}},
         "Task refused: no Keycloak user zed exists in realm FederatedNode" + NOT_KNOWN),
    Case("github-id-unknown", {"user": {"githubId": 999999}},
         "Task refused: no Keycloak user linked to GitHub user 999999 exists in realm "
         "FederatedNode" + NOT_KNOWN),
    Case("user-fn-administrator", {"user": {"username": "fn-admin"}, "dataset": 2},
         "Task refused: fn-admin is an administrator of the Federated Node; Tasks must run "
         "as a researcher, not an FN administrator, so that the project's data access "
         "applies"),

    # -- refused by the FN's own verdict (POST /tasks/validate) ----------------------------
    # A refusal carries no warnings, even where the admitted Task would have had one.
    Case("fn-image-not-allowed", {"image": "ghcr.io/fntc-sandbox/miner:2.0"},
         FN_REFUSED + "image ghcr.io/fntc-sandbox/miner:2.0" + NOT_ALLOWED),
    Case("fn-tag-unknown", {"image": f"{ANALYTICS_IMAGE}:9.9"},
         FN_REFUSED + f"image {ANALYTICS_IMAGE}:9.9" + NOT_ALLOWED),
    Case("fn-registry-unknown", {"image": "quay.io/fntc-sandbox/analytics:1.0"},
         FN_REFUSED + "Registry quay.io is not registered on this node"),
    Case("fn-project-unknown", {"project": "project9"},
         FN_REFUSED + "it has no project 'project9'; check spec.project"),
    Case("fn-user-not-in-project", {"project": "project2"},
         FN_REFUSED + "alice@example.org does not belong to the FN project 'project2'; ask "
         "the FN operators for access to that project"),
]


def manifest(case: Case, namespace: str) -> dict[str, Any]:
    body = task_manifest(case.name or case.id, namespace,
                         **{"image": DIGEST_IMAGE, **case.spec})
    for key in case.drop:
        body["spec"].pop(key)
    if case.generate_name:
        body["metadata"] = {"generateName": "gen-", "namespace": namespace}
    return body


@dataclass
class Outcomes:
    namespace: str
    answers: dict[str, subprocess.CompletedProcess[str]]
    stored: dict[str, dict[str, Any]]     # the Tasks the API server kept, by name


@pytest.fixture(scope="module")
def outcomes(stack: LocalStack) -> Outcomes:
    """Apply every case once, in parallel; the answers by case id, then the stored Tasks."""
    namespace = stack.plane.create_namespace(f"admission-specs-{uuid.uuid4().hex[:8]}")

    def send(case: Case) -> subprocess.CompletedProcess[str]:
        verb = "create" if case.generate_name else "apply"
        return stack.plane.kubectl(verb, "-f", "-", input=json.dumps(manifest(case, namespace)),
                                   check=False)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(zip((case.id for case in CASES), pool.map(send, CASES)))
    listed = json.loads(stack.plane.kubectl("get", "tasks", "-n", namespace,
                                            "-o", "json").stdout)
    return Outcomes(namespace, answers,
                    {task["metadata"]["name"]: task for task in listed["items"]})


def warnings_in(stderr: str) -> list[str]:
    return [line.removeprefix("Warning: ") for line in stderr.splitlines()
            if line.startswith("Warning: ")]


def fn_tasks_named(sandbox: Sandbox, namespace: str, name: str) -> list[Any]:
    needle = f" namespace={namespace} task={name} "
    return [task for task in sandbox.fn_state.tasks.values()
            if needle in f"{task.description or ''} "]


def test_the_table_is_large_and_ids_are_unique() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)
    assert sum(case.refused is None for case in CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_spec(case: Case, outcomes: Outcomes, sandbox: Sandbox) -> None:
    answer = outcomes.answers[case.id]
    name = case.name or case.id
    assert warnings_in(answer.stderr) == list(case.warnings), answer.stderr

    if case.refused is not None:
        assert answer.returncode != 0, answer.stdout
        denial = [line for line in answer.stderr.splitlines() if DENIED in line]
        assert len(denial) == 1, answer.stderr
        assert denial[0].startswith("Error from server (Forbidden)")
        assert denial[0].split(DENIED, 1)[1] == case.refused
        if not case.generate_name:
            assert name not in outcomes.stored
            assert fn_tasks_named(sandbox, outcomes.namespace, name) == []
        return

    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == f"task.tasks.federatednode.com/{name} created"
    annotations = outcomes.stored[name]["metadata"]["annotations"]
    fn_tasks = fn_tasks_named(sandbox, outcomes.namespace, name)
    assert len(fn_tasks) == 1
    assert annotations["tasks.federatednode.com/task-id"] == str(fn_tasks[0].id)
    assert annotations["tasks.federatednode.com/submission"] == "submitted"
    assert fn_tasks[0].description.endswith(
        f"uid={annotations['tasks.federatednode.com/admission-uid']}")


def test_nothing_else_was_stored_or_submitted(outcomes: Outcomes, sandbox: Sandbox) -> None:
    admitted = {case.name or case.id for case in CASES if case.refused is None}
    assert set(outcomes.stored) == admitted
    submitted = {task.name for task in sandbox.fn_state.tasks.values()
                 if f" namespace={outcomes.namespace} " in (task.description or "")}
    assert submitted == admitted


def test_resources_are_stored_and_reach_the_fn_as_text(outcomes: Outcomes,
                                                       sandbox: Sandbox) -> None:
    assert outcomes.stored["resources"]["spec"]["resources"] == RESOURCES
    [fn_task] = fn_tasks_named(sandbox, outcomes.namespace, "resources")
    assert fn_task.resources == RESOURCES
    [numbers] = fn_tasks_named(sandbox, outcomes.namespace, "resources-as-numbers")
    assert numbers.resources == {"limits": {"cpu": "2"}, "requests": {"cpu": "1"}}
