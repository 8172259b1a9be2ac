"""The GitHub stand-in answers as GitHub does for a GitHub App."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from fastapi.testclient import TestClient

from standins.clock import ManualClock
from standins.github import (
    API_VERSION,
    MEDIA_TYPE,
    GitHubState,
    create_github_app,
    default_github_state,
    generate_app_key,
)

START = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
HEADERS = {"Accept": MEDIA_TYPE, "X-GitHub-Api-Version": API_VERSION}
CANCER = "/repos/fntc-sandbox/cancer-study"


@dataclass
class GitHubSandbox:
    state: GitHubState
    private_key: bytes
    clock: ManualClock
    http: TestClient

    def app_jwt(self, *, iss: str = "424242", iat_offset: int = -60,
                lifetime: int = 540, key: bytes | None = None) -> str:
        iat = int(self.clock.now().timestamp()) + iat_offset
        return jwt.encode({"iat": iat, "exp": iat + lifetime, "iss": iss},
                          key or self.private_key, algorithm="RS256")

    def as_app(self, **jwt_options) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.app_jwt(**jwt_options)}"}

    def token(self, repo: str = "cancer-study", **body) -> str:
        found = self.http.get(f"/repos/fntc-sandbox/{repo}/installation",
                              headers=self.as_app())
        assert found.status_code == 200, found.text
        answer = self.http.post(f"/app/installations/{found.json()['id']}/access_tokens",
                                headers=self.as_app(), json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def github() -> GitHubSandbox:
    clock = ManualClock(START)
    state, private_key = default_github_state(clock)
    return GitHubSandbox(state, private_key, clock,
                   TestClient(create_github_app(state), headers=HEADERS))


def head_of(github: GitHubSandbox, token: str, branch: str = "main") -> str:
    answer = github.http.get(f"{CANCER}/git/ref/heads/{branch}", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    return answer.json()["object"]["sha"]


def commit_on(github: GitHubSandbox, token: str, parent: str, files: dict[str, str],
              message: str = "Add results") -> str:
    """Create (without moving any branch) a commit adding ``files`` on top of ``parent``."""
    headers = bearer(token)
    parent_tree = github.http.get(f"{CANCER}/git/commits/{parent}",
                                   headers=headers).json()["tree"]["sha"]
    entries = []
    for path, text in files.items():
        blob = github.http.post(f"{CANCER}/git/blobs", headers=headers, json={
            "content": base64.b64encode(text.encode()).decode(), "encoding": "base64"})
        entries.append({"path": path, "mode": "100644", "type": "blob",
                        "sha": blob.json()["sha"]})
    tree = github.http.post(f"{CANCER}/git/trees", headers=headers,
                             json={"base_tree": parent_tree, "tree": entries})
    commit = github.http.post(f"{CANCER}/git/commits", headers=headers, json={
        "message": message, "tree": tree.json()["sha"], "parents": [parent]})
    assert commit.status_code == 201, commit.text
    return commit.json()["sha"]


# -- app JWT ---------------------------------------------------------------------------

def test_installation_is_found_for_an_installed_repository_only(github: GitHubSandbox) -> None:
    found = github.http.get(f"{CANCER}/installation", headers=github.as_app())
    assert found.status_code == 200
    assert found.json()["account"]["login"] == "fntc-sandbox"

    missing = github.http.get("/repos/fntc-sandbox/not-installed/installation",
                               headers=github.as_app())
    assert missing.status_code == 404


def test_client_id_is_accepted_as_issuer(github: GitHubSandbox) -> None:
    answer = github.http.get(f"{CANCER}/installation",
                              headers=github.as_app(iss="Iv23sandboxapp"))
    assert answer.status_code == 200


@pytest.mark.parametrize("options", [
    pytest.param({"key": generate_app_key()[0]}, id="signed-by-another-key"),
    pytest.param({"iss": "999"}, id="unknown-issuer"),
    pytest.param({"iat_offset": -700, "lifetime": 600}, id="expired"),
    pytest.param({"iat_offset": 120}, id="issued-in-the-future"),
    pytest.param({"lifetime": 660}, id="lives-over-ten-minutes"),
])
def test_bad_app_jwt_is_refused(github: GitHubSandbox, options: dict) -> None:
    headers = github.as_app(**options)
    for answer in (github.http.get(f"{CANCER}/installation", headers=headers),
                   github.http.post("/app/installations/1/access_tokens", headers=headers)):
        assert answer.status_code == 401
        assert answer.json()["message"]
        assert answer.json()["documentation_url"].startswith("https://")


def test_unsigned_or_missing_jwt_and_installation_token_are_refused(
        github: GitHubSandbox) -> None:
    iat = int(START.timestamp()) - 60
    unsigned = jwt.encode({"iat": iat, "exp": iat + 540, "iss": "424242"}, None,
                          algorithm="none")
    for headers in (bearer(unsigned), {}, bearer(github.token())):
        answer = github.http.get(f"{CANCER}/installation", headers=headers)
        assert answer.status_code == 401, headers


def test_jwt_ages_with_the_stand_in_clock(github: GitHubSandbox) -> None:
    headers = github.as_app()
    assert github.http.get(f"{CANCER}/installation", headers=headers).status_code == 200
    github.clock.advance(541)
    assert github.http.get(f"{CANCER}/installation", headers=headers).status_code == 401


def test_missing_api_version_or_wrong_accept_is_refused(github: GitHubSandbox) -> None:
    no_version = github.http.get(f"{CANCER}/installation", headers={
        **github.as_app(), "X-GitHub-Api-Version": ""})
    assert no_version.status_code == 400
    wrong_accept = github.http.get(f"{CANCER}/installation", headers={
        **github.as_app(), "Accept": "text/html"})
    assert wrong_accept.status_code == 415


# -- installation tokens ---------------------------------------------------------------

def test_token_lasts_one_hour_on_the_stand_in_clock(github: GitHubSandbox) -> None:
    answer = github.http.post("/app/installations/1/access_tokens", headers=github.as_app())
    assert answer.status_code == 404  # no such installation

    installation = github.http.get(f"{CANCER}/installation", headers=github.as_app())
    answer = github.http.post(f"/app/installations/{installation.json()['id']}/access_tokens",
                               headers=github.as_app())
    token = answer.json()["token"]
    assert token.startswith("ghs_") and len(token) == 40
    assert answer.json()["expires_at"] == "2026-01-05T13:00:00Z"

    assert github.http.get(CANCER, headers=bearer(token)).status_code == 200
    github.clock.advance(3600)
    assert github.http.get(CANCER, headers=bearer(token)).status_code == 401


def test_token_reaches_only_the_repositories_it_was_scoped_to(github: GitHubSandbox) -> None:
    scoped = github.token(repositories=["cancer-study"])
    unscoped = github.token()
    admissions = "/repos/fntc-sandbox/admissions-study"

    assert github.http.get(CANCER, headers=bearer(scoped)).status_code == 200
    assert github.http.get(admissions, headers=bearer(scoped)).status_code == 404
    assert github.http.get(admissions, headers=bearer(unscoped)).status_code == 200
    not_installed = github.http.get("/repos/fntc-sandbox/not-installed",
                                     headers=bearer(unscoped))
    assert not_installed.status_code == 404
    assert github.http.get(CANCER, headers=bearer("ghs_" + "x" * 36)).status_code == 401
    assert github.http.get(CANCER, headers=bearer(github.app_jwt())).status_code == 401


def test_token_cannot_be_widened(github: GitHubSandbox) -> None:
    installation = github.http.get(f"{CANCER}/installation", headers=github.as_app())
    url = f"/app/installations/{installation.json()['id']}/access_tokens"
    for body in ({"repositories": ["not-installed"]},
                 {"permissions": {"administration": "write"}}):
        assert github.http.post(url, headers=github.as_app(), json=body).status_code == 422


def test_read_only_token_cannot_write(github: GitHubSandbox) -> None:
    token = github.token(permissions={"contents": "read"})
    assert github.http.get(f"{CANCER}/git/ref/heads/main",
                            headers=bearer(token)).status_code == 200
    answer = github.http.post(f"{CANCER}/git/blobs", headers=bearer(token),
                               json={"content": "x"})
    assert answer.status_code == 403


def test_uninstalling_the_app_cuts_off_existing_tokens(github: GitHubSandbox) -> None:
    token = github.token()
    github.state.set_installed("fntc-sandbox/cancer-study", False)
    assert github.http.get(CANCER, headers=bearer(token)).status_code == 404


# -- Git Data API ----------------------------------------------------------------------

def test_object_ids_are_the_ones_git_computes(github: GitHubSandbox) -> None:
    headers = bearer(github.token())
    blob = github.http.post(f"{CANCER}/git/blobs", headers=headers,
                             json={"content": "aGVsbG8K", "encoding": "base64"})
    assert blob.status_code == 201
    assert blob.json()["sha"] == "ce013625030ba8dba906f756967f9e9ca394464a"

    tree = github.http.post(f"{CANCER}/git/trees", headers=headers, json={"tree": [
        {"path": "hello.txt", "mode": "100644", "type": "blob", "sha": blob.json()["sha"]},
        {"path": "docs/a.md", "mode": "100644", "type": "blob", "content": "# Docs\n"}]})
    assert tree.json()["sha"] == "973de070658da04b4e87e5cb9acf15e4fed9221d"

    ada = {"name": "Ada Lovelace", "email": "ada@example.org", "date": "2026-01-05T12:00:00Z"}
    commit = github.http.post(f"{CANCER}/git/commits", headers=headers, json={
        "message": "Add results\n", "tree": tree.json()["sha"], "parents": [],
        "author": ada})
    assert commit.json()["sha"] == "b9c42729d9096ff77eddcab233ce8aa12f8ed147"


def test_tree_over_base_tree_keeps_old_files_and_lists_recursively(
        github: GitHubSandbox) -> None:
    token = github.token()
    sha = commit_on(github, token, head_of(github, token), {"out/table.csv": "a,b\n"})
    listing = github.http.get(f"{CANCER}/git/trees/{sha}?recursive=1", headers=bearer(token))
    paths = {item["path"]: item["type"] for item in listing.json()["tree"]}
    assert paths == {"README.md": "blob", "out": "tree", "out/table.csv": "blob"}

    flat = github.http.get(f"{CANCER}/git/trees/{sha}", headers=bearer(token))
    assert {item["path"] for item in flat.json()["tree"]} == {"README.md", "out"}


def test_bad_tree_entries_are_refused(github: GitHubSandbox) -> None:
    headers = bearer(github.token())
    for entry in ({"path": "../x", "mode": "100644", "content": "x"},
                  {"path": ".git/config", "mode": "100644", "content": "x"},
                  {"path": "x", "mode": "100644", "sha": "0" * 40},
                  {"path": "x", "mode": "777", "content": "x"}):
        answer = github.http.post(f"{CANCER}/git/trees", headers=headers,
                                   json={"tree": [entry]})
        assert answer.status_code == 422, entry


def test_refs_are_created_once_and_move_only_forward(github: GitHubSandbox) -> None:
    token = github.token()
    headers = bearer(token)
    main = head_of(github, token)
    first = commit_on(github, token, main, {"a.txt": "1"}, "first")
    second = commit_on(github, token, first, {"b.txt": "2"}, "second")
    sideways = commit_on(github, token, main, {"c.txt": "3"}, "sideways")

    create = {"ref": "refs/heads/results/task-1", "sha": first}
    assert github.http.post(f"{CANCER}/git/refs", headers=headers,
                             json=create).status_code == 201
    again = github.http.post(f"{CANCER}/git/refs", headers=headers, json=create)
    assert again.status_code == 422
    assert again.json()["message"] == "Reference already exists"

    ref = f"{CANCER}/git/refs/heads/results/task-1"
    forward = github.http.patch(ref, headers=headers, json={"sha": second, "force": False})
    assert forward.status_code == 200
    backward = github.http.patch(ref, headers=headers, json={"sha": sideways, "force": False})
    assert backward.status_code == 422
    assert github.state.head("fntc-sandbox/cancer-study", "results/task-1") == second
    forced = github.http.patch(ref, headers=headers, json={"sha": sideways, "force": True})
    assert forced.status_code == 200
    assert github.state.commits("fntc-sandbox/cancer-study", "results/task-1") == [
        "sideways", "Initial commit"]


def test_absent_branch_is_404(github: GitHubSandbox) -> None:
    answer = github.http.get(f"{CANCER}/git/ref/heads/nope", headers=bearer(github.token()))
    assert answer.status_code == 404


def test_empty_repository_refuses_the_git_data_api(github: GitHubSandbox) -> None:
    token = github.token("empty-repo")
    empty = "/repos/fntc-sandbox/empty-repo"
    about = github.http.get(empty, headers=bearer(token))
    assert about.json()["default_branch"] == "main"
    for answer in (github.http.get(f"{empty}/git/ref/heads/main", headers=bearer(token)),
                   github.http.post(f"{empty}/git/blobs", headers=bearer(token),
                                     json={"content": "x"})):
        assert answer.status_code == 409
        assert answer.json()["message"] == "Git Repository is empty."


def test_blob_over_the_size_limit_is_refused(github: GitHubSandbox) -> None:
    github.state.max_blob_bytes = 8
    headers = bearer(github.token())
    small = base64.b64encode(b"12345678").decode()
    large = base64.b64encode(b"123456789").decode()
    assert github.http.post(f"{CANCER}/git/blobs", headers=headers, json={
        "content": small, "encoding": "base64"}).status_code == 201
    assert github.http.post(f"{CANCER}/git/blobs", headers=headers, json={
        "content": large, "encoding": "base64"}).status_code == 422


def test_second_pull_request_for_a_head_is_refused(github: GitHubSandbox) -> None:
    token = github.token()
    sha = commit_on(github, token, head_of(github, token), {"a.txt": "1"})
    github.http.post(f"{CANCER}/git/refs", headers=bearer(token),
                      json={"ref": "refs/heads/results", "sha": sha})
    body = {"title": "Results", "head": "results", "base": "main", "body": "task 1"}
    first = github.http.post(f"{CANCER}/pulls", headers=bearer(token), json=body)
    assert first.status_code == 201 and first.json()["number"] == 1
    second = github.http.post(f"{CANCER}/pulls", headers=bearer(token),
                               json={**body, "head": "fntc-sandbox:results"})
    assert second.status_code == 422
    assert "already exists" in second.json()["errors"][0]["message"]
    assert len(github.state.pull_requests("fntc-sandbox/cancer-study")) == 1


# -- rate limits, faults, inspection ---------------------------------------------------

def test_every_answer_carries_rate_limit_headers_until_the_budget_is_spent(
        github: GitHubSandbox) -> None:
    github.state.rate_limit = 3
    token = github.token()  # the app JWT has its own budget
    remaining = [github.http.get(f"{CANCER}/git/ref/heads/{branch}", headers=bearer(token))
                 for branch in ("main", "absent", "main", "main")]
    assert [a.headers["x-ratelimit-remaining"] for a in remaining] == ["2", "1", "0", "0"]
    assert [a.status_code for a in remaining] == [200, 404, 200, 403]
    reset = int(remaining[-1].headers["x-ratelimit-reset"])
    assert reset == int(START.timestamp()) + 3600

    github.clock.set(datetime.fromtimestamp(reset, timezone.utc) + timedelta(seconds=1))
    assert github.http.get(f"{CANCER}/installation",
                            headers=github.as_app()).status_code == 200
    answer = github.http.get(CANCER, headers=bearer(token))
    assert answer.status_code == 401  # the token expired with the hour; budget restarted
    assert answer.headers["x-ratelimit-remaining"] == "2"


def test_injected_secondary_limit_answers_with_retry_after(github: GitHubSandbox) -> None:
    token = github.token()
    control = github.http.post("/_standin/faults", json={
        "method": "POST", "path_prefix": f"{CANCER}/git/blobs", "status": 429,
        "body": {"message": "You have exceeded a secondary rate limit."},
        "headers": {"retry-after": "30"}})
    assert control.status_code == 201
    limited = github.http.post(f"{CANCER}/git/blobs", headers=bearer(token),
                                json={"content": "x"})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "30"
    assert "x-ratelimit-remaining" in limited.headers
    assert github.http.post(f"{CANCER}/git/blobs", headers=bearer(token),
                             json={"content": "x"}).status_code == 201


def test_requests_are_recorded_without_credentials(github: GitHubSandbox) -> None:
    token = github.token()
    github.http.get(f"{CANCER}/git/ref/heads/main", headers=bearer(token))
    assert github.state.requests[-1] == ("GET", f"{CANCER}/git/ref/heads/main")
    assert ("GET", f"{CANCER}/installation") in github.state.requests
    assert not any(token in path for _, path in github.state.requests)


def test_control_endpoint_lists_branch_files_as_text(github: GitHubSandbox) -> None:
    files = github.http.get("/_standin/repos/fntc-sandbox/cancer-study/branches/main/files")
    assert files.status_code == 200
    assert files.json()["README.md"].startswith("# cancer-study")
    absent = github.http.get("/_standin/repos/fntc-sandbox/cancer-study/branches/x/y/files")
    assert absent.status_code == 404
