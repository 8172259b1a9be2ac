"""The Federated Node stand-in, with the Keycloak stand-in behind it, over real HTTP."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from standins.clock import ManualClock
from standins.faults import Faults
from standins.fn import (ANALYTICS_DIGEST, ANALYTICS_IMAGE, FNState, ImageBehaviour,
                         create_fn_app, default_fn_state)
from standins.fn_state import RESULTS_EXPIRED, SUMMARY_CSV
from standins.keycloak import (EXCHANGE_GRANT, REFRESH_TOKEN_TYPE, KeycloakState,
                               create_keycloak_app, default_keycloak_state, seed_user_id)
from standins.server import serve_in_thread

START = datetime(2024, 1, 1, 10, 0, tzinfo=timezone.utc)
CLIENT = {"client_id": "global", "client_secret": "sandbox-client-secret"}
TOKEN_PATH = "/realms/FederatedNode/protocol/openid-connect/token"
IMAGE = f"{ANALYTICS_IMAGE}:1.0"


class SwappableApp:
    """One server per module, serving whichever app the current test built.

    Starting and stopping servers per test would cost more than the tests.
    """

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)


@dataclass
class LocalNode:
    """A Keycloak and an FN stand-in sharing one manual clock."""

    clock: ManualClock
    keycloak_state: KeycloakState
    fn_state: FNState
    keycloak: httpx.Client
    fn: httpx.Client
    fn_faults: Faults

    def admin_access_token(self) -> str:
        answer = self.keycloak.post(TOKEN_PATH, data={
            "grant_type": "password", "username": "fn-admin",
            "password": "sandbox-admin-password", **CLIENT})
        return answer.json()["access_token"]

    def refresh_token(self, username: str) -> str:
        """What the controller hands the FN: a refresh token got by token exchange."""
        if username == "fn-admin":
            return self.keycloak.post(TOKEN_PATH, data={
                "grant_type": "password", "username": "fn-admin",
                "password": "sandbox-admin-password", **CLIENT}).json()["refresh_token"]
        answer = self.keycloak.post(TOKEN_PATH, data={
            "grant_type": EXCHANGE_GRANT, "subject_token": self.admin_access_token(),
            "requested_subject": seed_user_id(username),
            "requested_token_type": REFRESH_TOKEN_TYPE, "audience": "global", **CLIENT})
        return answer.json()["refresh_token"]

    def headers(self, username: str, project: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.refresh_token(username)}"}
        if project is not None:
            headers["project-name"] = project
        return headers


def fresh_connections(base_url: str) -> httpx.Client:
    """A client opening a connection per request.

    NB: on a reused loopback connection each answer waits ~40 ms for a delayed
    ACK (the server writes headers and body separately without TCP_NODELAY);
    a new connection answers at once and keeps the suite fast.
    """
    return httpx.Client(base_url=base_url, timeout=5,
                        limits=httpx.Limits(max_keepalive_connections=0))


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[SwappableApp, str, SwappableApp, str]]:
    keycloak_app, fn_app = SwappableApp(), SwappableApp()
    keycloak_server = serve_in_thread(keycloak_app)
    fn_server = serve_in_thread(fn_app)
    yield keycloak_app, keycloak_server.url, fn_app, fn_server.url
    fn_server.stop()
    keycloak_server.stop()


@pytest.fixture
def node(servers) -> Iterator[LocalNode]:
    keycloak_app, keycloak_url, fn_app, fn_url = servers
    clock = ManualClock(START)
    keycloak_state = default_keycloak_state(clock)
    fn_state = default_fn_state(clock, keycloak_url)
    faults = Faults()
    keycloak_app.app = create_keycloak_app(keycloak_state)
    fn_app.app = create_fn_app(fn_state, faults)
    with fresh_connections(keycloak_url) as keycloak, fresh_connections(fn_url) as fn:
        yield LocalNode(clock, keycloak_state, fn_state, keycloak, fn, faults)


@pytest.fixture
def alice(node) -> dict[str, str]:
    return node.headers("alice@example.org", "project1")


@pytest.fixture
def admin(node) -> dict[str, str]:
    return node.headers("fn-admin")


def task_body(image: str = IMAGE, **fields: object) -> dict:
    return {"name": "summary", "executors": [{"image": image}], **fields}


def submit(node: LocalNode, headers: dict, image: str = IMAGE, **fields: object) -> int:
    answer = node.fn.post("/tasks", json=task_body(image, **fields), headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()["task_id"]


# Health and authentication

def test_health_and_ready_checks(node):
    healthy = node.fn.get("/health_check")
    node.keycloak.post("/_standin/faults", json={"path_prefix": "/realms/",
                                                    "status": 503})
    degraded = node.fn.get("/health_check")

    assert healthy.json() == {"status": "ok", "keycloak": True}
    assert degraded.status_code == 502
    assert degraded.json() == {"status": "non operational", "keycloak": False}
    assert node.fn.get("/ready_check").json() == {"status": "ready"}


def test_missing_token_is_401(node):
    answer = node.fn.post("/tasks", json=task_body(), headers={"project-name": "project1"})

    assert answer.status_code == 401
    assert node.fn_state.submissions == []


def test_access_token_fails_to_login(node):
    headers = {"Authorization": f"Bearer {node.admin_access_token()}"}

    answer = node.fn.get("/tasks", headers=headers)

    assert answer.status_code == 401
    assert answer.json() == {"error": "Failed to login"}


def test_expired_refresh_token_is_401(node, alice):
    node.clock.advance(31 * 24 * 3600)

    answer = node.fn.post("/tasks", json=task_body(), headers=alice)

    assert answer.status_code == 401


def test_fn_refreshes_the_bearer_at_keycloak_with_its_client(node, alice):
    submit(node, alice)

    refreshes = [request for request in node.keycloak_state.requests
                 if request.grant_type == "refresh_token"]
    assert len(refreshes) == 1
    assert refreshes[0].status == 200


# POST /tasks: refusals, in the FN's words and codes

REFUSALS = [
    pytest.param({"name": ""}, None, 400, "name is a mandatory field", id="empty-name"),
    pytest.param({"name": "   "}, None, 400, "name is a mandatory field", id="blank-name"),
    pytest.param({"executors": None}, None, 500, "Internal Error", id="no-executors"),
    pytest.param({"executors": {"image": IMAGE}}, None, 500, "Internal Error",
                 id="executors-object"),
    pytest.param({"inputs": ["a"]}, None, 400, None, id="inputs-list"),
    pytest.param({"outputs": "results"}, None, 400, None, id="outputs-string"),
    pytest.param({"resources": {"limits": {"cpu": 2}}}, None, 500, "Internal Error",
                 id="resource-integer"),
    pytest.param({"resources": {"limits": {"memory": "512Mi"},
                                "requests": {"memory": "1Gi"}}}, None, 400, None,
                 id="limit-below-request"),
    pytest.param({}, "ghcr.io/fntc-sandbox/analytics", 400,
                 "Image ghcr.io/fntc-sandbox/analytics does not have a tag or is malformed",
                 id="image-without-tag"),
    pytest.param({}, "localhost:5000/fntc-sandbox/analytics:1.0", 400, None,
                 id="registry-with-port"),
    pytest.param({}, "analytics:1.0", 400, None, id="image-without-registry"),
    pytest.param({}, "quay.io/fntc-sandbox/analytics:1.0", 400, None,
                 id="unknown-registry"),
    pytest.param({}, "ghcr.io/someone/else:1.0", 500,
                 "Image ghcr.io/someone/else:1.0 could not be found", id="not-allow-listed"),
    pytest.param({}, f"{ANALYTICS_IMAGE}:9.9", 500,
                 f"Image {ANALYTICS_IMAGE}:9.9 could not be found", id="unknown-tag"),
    pytest.param({}, f"{ANALYTICS_IMAGE}@sha256:" + "0" * 64, 500, None,
                 id="unknown-digest"),
    pytest.param({"repository": "fntc-sandbox/unlinked"}, None, 400,
                 "No datasets linked with the repository fntc-sandbox/unlinked",
                 id="unlinked-repository"),
]


@pytest.mark.parametrize("fields, image, status, message", REFUSALS)
def test_post_tasks_refusals(node, alice, fields, image, status, message):
    body = {**task_body(image or IMAGE), **fields}

    answer = node.fn.post("/tasks", json=body, headers=alice)

    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error"}
    if message is not None:
        assert answer.json()["error"] == message
    assert node.fn_state.submissions == []


def test_non_json_body_is_415(node, alice):
    answer = node.fn.post("/tasks", content=b"name=x", headers={
        **alice, "Content-Type": "application/x-www-form-urlencoded"})

    assert answer.status_code == 415


@pytest.mark.parametrize("user, project, message", [
    pytest.param("alice@example.org", None, "User does not belong to a valid project",
                 id="no-project-header"),
    pytest.param("alice@example.org", "project9", "Could not find project",
                 id="unknown-project"),
    pytest.param("bob", "project1", "User does not belong to a valid project",
                 id="not-a-member"),
])
def test_non_admin_needs_a_project_of_theirs(node, user, project, message):
    answer = node.fn.post("/tasks", json=task_body(tags={"dataset_id": 1}),
                             headers=node.headers(user, project))

    assert answer.status_code == 400
    assert answer.json() == {"error": message}


@pytest.mark.parametrize("tags, message", [
    pytest.param({"dataset_id": 99}, "Dataset 99 does not exist", id="unknown-id"),
    pytest.param({"dataset_name": "nope"}, "Dataset nope does not exist", id="unknown-name"),
])
def test_admin_naming_an_unknown_dataset_is_404(node, admin, tags, message):
    answer = node.fn.post("/tasks", json=task_body(tags=tags), headers=admin)

    assert answer.status_code == 404
    assert answer.json() == {"error": message}


def test_unexpected_crash_is_internal_error(node, alice):
    # A broken row: the handler crashes reading the project's members.
    node.fn_state.projects["project1"] = "not a project"

    answer = node.fn.post("/tasks", json=task_body(), headers=alice)

    assert answer.status_code == 500
    assert answer.json() == {"error": "Internal Error"}


# POST /tasks: what gets created

def test_researcher_task_takes_the_projects_dataset_and_keeps_what_matters(node, alice):
    body = task_body(name="cancer summary", description="fntc: default/summary",
                     task_controller=True, tags={"dataset_id": 2, "colour": "blue"},
                     resources={"limits": {"cpu": "1", "memory": "1Gi"},
                                "requests": {"cpu": "500m", "memory": "512Mi"}})
    body["executors"][0]["env"] = {"ROWS": 10}

    answer = node.fn.post("/tasks", json=body, headers=alice)

    assert answer.status_code == 201
    assert answer.json() == {"task_id": 1}
    [task] = node.fn_state.submissions
    assert task.name == "cancersummary"
    assert task.dataset_id == 1
    assert task.tags == {"dataset_id": 2}
    assert task.description == "fntc: default/summary"
    assert task.task_controller is True
    assert task.owner_email == "alice@example.org"
    assert task.requested_by == seed_user_id("alice@example.org")
    assert task.executors[0]["env"] == {"ROWS": "10"}


def test_admin_names_the_dataset_in_tags(node, admin):
    by_id = submit(node, admin, tags={"dataset_id": "2"})
    by_name = submit(node, admin, tags={"dataset_name": "cancer-registry"})

    assert node.fn_state.tasks[by_id].dataset_id == 2
    assert node.fn_state.tasks[by_name].dataset_id == 1


def test_linked_repository_selects_the_dataset_for_an_admin(node, admin):
    node.fn_state.repositories["fntc-sandbox/results"] = 2

    task_id = submit(node, admin, repository="fntc-sandbox/results")

    assert node.fn_state.tasks[task_id].dataset_id == 2


def test_image_by_digest_behaves_like_its_tag(node, alice):
    task_id = submit(node, alice, image=f"{ANALYTICS_IMAGE}@{ANALYTICS_DIGEST}")
    node.clock.advance(10)

    status = node.fn.get(f"/tasks/{task_id}", headers=alice).json()["status"]

    assert status["terminated"]["exit_code"] == 0


def test_validate_answers_ok_and_creates_nothing(node, alice):
    valid = node.fn.post("/tasks/validate", json=task_body(), headers=alice)
    invalid = node.fn.post("/tasks/validate", json=task_body(name=""), headers=alice)

    assert valid.status_code == 200
    assert valid.text == "Ok"
    assert invalid.status_code == 400
    assert node.fn_state.submissions == []
    assert node.fn_state.tasks == {}


# GET /tasks/{id}: status read live from the clock

def test_status_moves_from_scheduled_to_running_to_terminated(node, alice):
    task_id = submit(node, alice)

    def status() -> object:
        return node.fn.get(f"/tasks/{task_id}", headers=alice).json()["status"]

    scheduled = status()
    node.clock.advance(2)
    running = status()
    node.clock.advance(5)
    terminated = status()

    assert scheduled == "scheduled"
    assert running == {"running": {"started_at": "Mon, 01 Jan 2024 10:00:02 GMT"}}
    assert terminated == {"terminated": {
        "started_at": "Mon, 01 Jan 2024 10:00:02 GMT",
        "finished_at": "Mon, 01 Jan 2024 10:00:07 GMT",
        "exit_code": 0, "reason": "Completed"}}


@pytest.mark.parametrize("tag, expected", [
    pytest.param("crash", {"exit_code": 1, "reason": "Error"}, id="crash"),
    pytest.param("oom", {"exit_code": 137, "reason": "OOMKilled"}, id="oom"),
    pytest.param("pull-error", "waiting", id="pull-error"),
    pytest.param("evicted", "deleted", id="evicted"),
])
def test_failing_images_end_as_the_fn_reports_them(node, alice, tag, expected):
    task_id = submit(node, alice, image=f"{ANALYTICS_IMAGE}:{tag}")
    node.clock.advance(3600)

    status = node.fn.get(f"/tasks/{task_id}", headers=alice).json()["status"]

    if isinstance(expected, dict):
        assert {key: status["terminated"][key] for key in expected} == expected
    else:
        assert status == expected


def test_task_view_fields_and_access(node, alice, admin):
    task_id = submit(node, alice, description="fntc: ns/name")

    own = node.fn.get(f"/tasks/{task_id}", headers=alice)
    as_admin = node.fn.get(f"/tasks/{task_id}", headers=admin)
    as_bob = node.fn.get(f"/tasks/{task_id}", headers=node.headers("bob", "project2"))
    unknown = node.fn.get("/tasks/999", headers=alice)

    assert own.status_code == as_admin.status_code == 200
    view = own.json()
    assert view["created_at"] == view["updated_at"] == "2024-01-01 10:00:00"
    assert view["docker_image"] == IMAGE
    assert view["description"] == "fntc: ns/name"
    assert view["review_status"] is None
    assert as_bob.status_code == 403
    assert unknown.status_code == 404


# Cancel and logs

def test_cancel_twice_answers_500_the_second_time(node, alice):
    task_id = submit(node, alice)

    first = node.fn.post(f"/tasks/{task_id}/cancel", headers=alice)
    second = node.fn.post(f"/tasks/{task_id}/cancel", headers=alice)

    assert first.status_code == 201
    assert first.json()["status"] == "cancelled"
    assert second.status_code == 500
    assert second.json() == {"error": "Task already cancelled"}
    assert node.fn_state.cancels == [(task_id, 201), (task_id, 500)]


def test_logs_are_queued_until_the_container_starts(node, alice):
    task_id = submit(node, alice)

    queued = node.fn.get(f"/tasks/{task_id}/logs", headers=alice).json()
    node.clock.advance(10)
    lines = node.fn.get(f"/tasks/{task_id}/logs", headers=alice).json()

    assert queued == {"logs": "Task queued"}
    assert isinstance(lines["logs"], list) and lines["logs"]


# Results

def zip_members(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_results_are_an_empty_zip_until_the_task_terminates(node, alice):
    task_id = submit(node, alice)

    early = node.fn.get(f"/tasks/{task_id}/results", headers=alice)
    node.clock.advance(7)
    done = node.fn.get(f"/tasks/{task_id}/results", headers=alice)

    assert early.status_code == 200
    assert zip_members(early.content) == {}
    assert done.headers["content-type"] == "application/zip"
    assert done.headers["content-disposition"] == (
        f"inline; filename=sandbox-node-{task_id}-results.zip")
    members = zip_members(done.content)
    assert sorted(members) == ["report.md", "summary.csv"]
    assert members["summary.csv"] == SUMMARY_CSV


def test_older_nodes_send_a_tarball_of_the_output_folder(node, alice):
    node.fn_state.results_format = "tar.gz"
    task_id = submit(node, alice)
    node.clock.advance(7)

    answer = node.fn.get(f"/tasks/{task_id}/results", headers=alice)

    assert answer.content[:2] == b"\x1f\x8b"
    with tarfile.open(fileobj=io.BytesIO(answer.content), mode="r:gz") as archive:
        names = sorted(archive.getnames())
        summary = archive.extractfile("results/summary.csv").read()
    assert names == ["results/report.md", "results/summary.csv"]
    assert summary == SUMMARY_CSV


def test_results_expire_after_three_days(node, alice):
    task_id = submit(node, alice)

    node.clock.advance(3 * 24 * 3600)
    last_moment = node.fn.get(f"/tasks/{task_id}/results", headers=alice)
    node.clock.advance(1)
    expired = node.fn.get(f"/tasks/{task_id}/results", headers=alice)

    assert last_moment.status_code == 200
    assert expired.status_code == 500
    assert expired.json() == {"error": RESULTS_EXPIRED}


def test_review_gate_holds_results_until_an_admin_decides(node, alice, admin):
    node.fn_state.review_enabled = True
    approved_id = submit(node, alice)
    blocked_id = submit(node, alice)
    node.clock.advance(10)

    pending = node.fn.get(f"/tasks/{approved_id}/results", headers=alice)
    admin_view = node.fn.get(f"/tasks/{approved_id}/results", headers=admin)
    review_status = node.fn.get(f"/tasks/{approved_id}", headers=alice).json()
    node.fn.post(f"/_standin/tasks/{approved_id}/review", json={"decision": "approve"})
    node.fn.post(f"/_standin/tasks/{blocked_id}/review", json={"decision": "block"})
    released = node.fn.get(f"/tasks/{approved_id}/results", headers=alice)
    blocked = node.fn.get(f"/tasks/{blocked_id}/results", headers=alice)

    assert pending.status_code == 400
    assert pending.json() == {"status": "Pending Review"}
    assert review_status["review_status"] == "Pending Review"
    assert admin_view.status_code == 200
    assert released.status_code == 200
    assert "summary.csv" in zip_members(released.content)
    assert blocked.status_code == 400
    assert blocked.json() == {"status": "Blocked Release"}


# Admin task list

def test_task_list_is_for_admins_and_filters_by_description(node, alice, admin):
    ours = submit(node, alice, description="fntc: default/summary", task_controller=True)
    submit(node, alice, description="by hand")
    submit(node, alice)

    refused = node.fn.get("/tasks", headers=alice)
    matched = node.fn.get("/tasks", headers=admin,
                             params={"description__eq": "fntc: default/summary"})
    not_ours = node.fn.get("/tasks", headers=admin,
                              params={"description__ne": "fntc: default/summary"})
    by_controller = node.fn.get("/tasks", headers=admin,
                                   params={"task_controller__eq": "true"})

    assert refused.status_code == 403
    assert [item["id"] for item in matched.json()["items"]] == [ours]
    # A task without a description matches no comparison, as in SQL.
    assert [item["description"] for item in not_ours.json()["items"]] == ["by hand"]
    assert [item["id"] for item in by_controller.json()["items"]] == [ours]


def test_task_list_pages_and_time_filters(node, alice, admin):
    for _ in range(3):
        submit(node, alice)
        node.clock.advance(60)

    page = node.fn.get("/tasks", headers=admin, params={"page": 2, "per_page": 2}).json()
    recent = node.fn.get("/tasks", headers=admin,
                            params={"created_at__gte": "2024-01-01 10:01:00"}).json()
    bad_field = node.fn.get("/tasks", headers=admin, params={"colour__eq": "blue"})

    assert (page["page"], page["per_page"], page["total"], page["pages"]) == (2, 2, 3, 2)
    assert [item["id"] for item in page["items"]] == [3]
    assert [item["id"] for item in recent["items"]] == [2, 3]
    assert bad_field.status_code == 400


# Control endpoints and faults

def test_control_endpoints_move_the_clock_and_list_tasks(node, alice):
    task_id = submit(node, alice, description="fntc: default/summary")

    advanced = node.fn.post("/_standin/clock/advance", json={"seconds": 3})
    listed = node.fn.get("/_standin/tasks").json()["tasks"]

    assert advanced.status_code == 200
    assert node.clock.now() == START.replace(second=3)
    assert listed == [{
        "id": task_id, "name": "summary", "description": "fntc: default/summary",
        "owner": "alice@example.org", "docker_image": IMAGE, "dataset_id": 1,
        "task_controller": None, "created_at": "2024-01-01 10:00:00",
        "status": {"running": {"started_at": "Mon, 01 Jan 2024 10:00:02 GMT"}},
        "review_status": None}]


def test_injected_fault_answers_before_the_fn_does(node, alice):
    task_id = submit(node, alice)
    node.fn.post("/_standin/faults", json={
        "method": "GET", "path_prefix": f"/tasks/{task_id}/results", "status": 503,
        "body": {"error": "Service Unavailable"}, "times": 2})

    faulted = [node.fn.get(f"/tasks/{task_id}/results", headers=alice).status_code
               for _ in range(2)]
    recovered = node.fn.get(f"/tasks/{task_id}/results", headers=alice)

    assert faulted == [503, 503]
    assert recovered.status_code == 200


def test_cleared_faults_no_longer_answer(node, alice):
    node.fn.post("/_standin/faults", json={"path_prefix": "/tasks", "status": 502})
    node.fn.delete("/_standin/faults")

    answer = node.fn.post("/tasks", json=task_body(), headers=alice)

    assert answer.status_code == 201
    assert node.fn.get("/_standin/faults").json() == {"pending": []}


def test_delayed_fault_makes_a_client_time_out(node, alice):
    node.fn_faults.add("GET", "/tasks/", 0, delay=0.5)

    with pytest.raises(httpx.ReadTimeout):
        node.fn.get("/tasks/1/results", headers=alice, timeout=0.1)


def test_faults_match_method_and_prefix_and_are_used_up():
    faults = Faults()
    faults.add("POST", "/tasks", 503, {"error": "down"}, times=2)

    assert faults.take("GET", "/tasks") is None
    assert faults.take("POST", "/other") is None
    assert faults.take("post", "/tasks/validate").status == 503
    assert faults.take("POST", "/tasks").status == 503
    assert faults.take("POST", "/tasks") is None


def test_requests_are_counted_for_exactly_one_task_assertions(node, alice):
    submit(node, alice)
    node.fn.post("/tasks/validate", json=task_body(), headers=alice)

    created = [request for request in node.fn_state.requests
               if request.method == "POST" and request.path == "/tasks"]
    assert [request.status for request in created] == [201]
    assert len(node.fn_state.submissions) == 1


def test_image_behaviour_can_be_tuned_per_test(node, alice):
    node.fn_state.images[ANALYTICS_IMAGE]["slow"] = ImageBehaviour(
        schedule_seconds=60, run_seconds=600, results={"out.txt": b"42\n"})
    task_id = submit(node, alice, image=f"{ANALYTICS_IMAGE}:slow")

    node.clock.advance(59)
    still_scheduled = node.fn.get(f"/tasks/{task_id}", headers=alice).json()["status"]
    node.clock.advance(601)
    results = node.fn.get(f"/tasks/{task_id}/results", headers=alice)

    assert still_scheduled == "scheduled"
    assert zip_members(results.content) == {"out.txt": b"42\n"}
