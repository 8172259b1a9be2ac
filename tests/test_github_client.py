"""Results delivery through the GitHub App client.

Most tests talk over real HTTP to the GitHub stand-in; a few use httpx's mock
transport where the answer to provoke is awkward to get from the stand-in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
import jwt
import pytest

from standins.clock import ManualClock
from standins.github import GitHubState, create_github_app, default_github_state
from standins.server import RunningServer, serve_in_thread
from taskcore.errors import RateLimited
from taskcore.github import Delivery, GitHubApp, GitHubError, GitHubRateLimited

START = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
CANCER = "fntc-sandbox/cancer-study"
MARKER = "fntc-task: research/task-12 uid=5f1c"
RESULTS = {"summary.csv": b"cohort,n\na,12\n", "plots/survival.txt": b"median 14.2\n"}


@dataclass
class Live:
    state: GitHubState
    clock: ManualClock
    server: RunningServer
    app: GitHubApp

    def deliver(self, repository: str = CANCER, *, branch: str = "results/task-12",
                base_branch: str | None = None, files: dict[str, bytes] | None = None,
                message: str = "Results of task 12", marker: str = MARKER,
                replace_folder: str | None = None) -> Delivery:
        return self.app.deliver(repository=repository, branch=branch, base_branch=base_branch,
                                files=RESULTS if files is None else files, message=message,
                                marker=marker, replace_folder=replace_folder)

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.state.requests if m != "GET"]


@pytest.fixture
def live() -> Iterator[Live]:
    clock = ManualClock(START)
    state, private_key = default_github_state(clock)
    server = serve_in_thread(create_github_app(state))
    app = GitHubApp(api_url=server.url, app_id=state.app_id, private_key_pem=private_key,
                    timeout=5, now=lambda: clock.now().timestamp())
    try:
        yield Live(state, clock, server, app)
    finally:
        app.close()
        server.stop()


# -- over HTTP, against the stand-in ---------------------------------------------------

def test_delivery_creates_the_branch_with_the_files(live: Live) -> None:
    delivery = live.deliver()

    assert delivery == Delivery(CANCER, "results/task-12",
                                live.state.head(CANCER, "results/task-12"), created=True)
    files = live.state.branch_files(CANCER, "results/task-12")
    assert files == {"README.md": files["README.md"], **RESULTS}
    assert live.state.commits(CANCER, "results/task-12") == [
        f"Results of task 12\n\n{MARKER}", "Initial commit"]
    assert live.state.head(CANCER, "main") is not None
    assert live.state.branch_files(CANCER, "main").keys() == {"README.md"}


def test_repeated_delivery_writes_nothing_and_returns_the_same_commit(live: Live) -> None:
    first = live.deliver()
    writes_before = live.writes()

    again = live.deliver(files={"other.txt": b"would be new"})

    assert again == Delivery(first.repository, first.branch, first.commit_sha, created=False)
    assert live.writes() == writes_before
    assert "other.txt" not in live.state.branch_files(CANCER, "results/task-12")


def test_text_travels_inside_the_tree_and_only_binary_files_become_blobs(live: Live) -> None:
    image = b"\x89PNG\r\n\x1a\n\x00\xff\xfe"
    big_text = b"0123456789abcde\n" * (2**16 + 1)  # just over the inline size
    files = {**RESULTS, "plots/km.png": image, "big.csv": big_text, "crlf.txt": b"a\r\nb"}

    live.deliver(files=files)

    uploads = [p for m, p in live.state.requests if p.endswith("/git/blobs")]
    assert len(uploads) == 2
    delivered = live.state.branch_files(CANCER, "results/task-12")
    assert {path: delivered[path] for path in files} == files


def test_marker_already_in_the_message_is_not_repeated(live: Live) -> None:
    live.deliver(message=f"Results\n\n{MARKER}")
    assert live.state.commits(CANCER, "results/task-12")[0] == f"Results\n\n{MARKER}"


def test_a_longer_marker_containing_ours_does_not_count(live: Live) -> None:
    live.deliver(marker=MARKER + "0")
    assert live.deliver().created


def test_existing_branch_without_the_marker_gets_a_commit_on_top(live: Live) -> None:
    earlier = live.deliver(files={"old.txt": b"earlier run\n"}, marker="fntc-task: other")

    delivery = live.deliver()

    assert delivery.created and delivery.commit_sha != earlier.commit_sha
    assert live.state.commits(CANCER, "results/task-12")[1:] == [
        "Results of task 12\n\nfntc-task: other", "Initial commit"]
    assert live.state.branch_files(CANCER, "results/task-12").keys() == {
        "README.md", "old.txt", *RESULTS}


def test_new_branch_starts_from_the_base_branch_when_it_exists(live: Live) -> None:
    live.deliver(branch="develop", files={"dev.txt": b"dev\n"}, marker="fntc-task: setup")

    live.deliver(base_branch="develop")
    assert "dev.txt" in live.state.branch_files(CANCER, "results/task-12")

    live.deliver(branch="results/task-13", base_branch="no-such-branch")
    assert "dev.txt" not in live.state.branch_files(CANCER, "results/task-13")


def test_a_replaced_folder_holds_only_this_delivery(live: Live) -> None:
    """Files an earlier run left in the folder on the base branch do not linger."""
    earlier = {"results/study/old.csv": b"old\n", "results/study/deep/stale.txt": b"x",
               "results/study/summary.csv": b"old summary\n", "results/other/keep.csv": b"k",
               "notes.md": b"notes\n"}
    live.deliver(branch="develop", files=earlier, marker="fntc-task: setup")
    fresh = {"results/study/summary.csv": b"new summary\n", "results/study/plots/a.txt": b"a"}

    live.deliver(base_branch="develop", files=fresh, replace_folder="results/study/")

    files = live.state.branch_files(CANCER, "results/task-12")
    assert {path for path in files if path.startswith("results/study/")} == set(fresh)
    assert files["results/study/summary.csv"] == b"new summary\n"
    assert {"results/other/keep.csv", "notes.md", "README.md"} <= files.keys()
    assert live.state.branch_files(CANCER, "develop").keys() >= earlier.keys()


def test_replacing_a_folder_the_base_lacks_adds_the_files(live: Live) -> None:
    live.deliver(replace_folder="results/new/", files={"results/new/a.txt": b"a"})
    assert live.state.branch_files(CANCER, "results/task-12").keys() == {
        "README.md", "results/new/a.txt"}


def test_empty_results_still_record_the_delivery(live: Live) -> None:
    delivery = live.deliver(files={})
    assert delivery.created
    assert live.state.branch_files(CANCER, "results/task-12").keys() == {"README.md"}
    assert live.deliver(files={}).created is False


def test_repository_without_the_app_tells_the_admin_to_install_it(live: Live) -> None:
    with pytest.raises(GitHubError) as caught:
        live.deliver("fntc-sandbox/not-installed")
    assert caught.value.status == 404 and not caught.value.transient
    assert "install the app on it" in str(caught.value)
    assert "check spec.repository" in str(caught.value)
    assert live.writes() == []


def test_empty_repository_is_an_error_that_says_so(live: Live) -> None:
    with pytest.raises(GitHubError) as caught:
        live.deliver("fntc-sandbox/empty-repo")
    assert not caught.value.transient
    assert "no commits yet" in str(caught.value)


def test_secondary_rate_limit_becomes_rate_limited_and_a_retry_succeeds(live: Live) -> None:
    live.state.faults.add("POST", f"/repos/{CANCER}/git/trees", 429,
                          {"message": "You have exceeded a secondary rate limit."},
                          headers={"retry-after": "30"})

    with pytest.raises(GitHubRateLimited) as caught:
        live.deliver()
    assert isinstance(caught.value, RateLimited) and isinstance(caught.value, GitHubError)
    assert caught.value.retry_after == 30 and caught.value.transient
    assert caught.value.service == "github"
    assert live.state.head(CANCER, "results/task-12") is None

    assert live.deliver().created
    assert live.state.branch_files(CANCER, "results/task-12").keys() >= RESULTS.keys()


def test_server_error_is_transient_and_a_retry_succeeds(live: Live) -> None:
    live.state.faults.add("POST", f"/repos/{CANCER}/git/commits", 502, "Bad Gateway")

    with pytest.raises(GitHubError) as caught:
        live.deliver()
    assert caught.value.transient and caught.value.status == 502

    delivery = live.deliver()
    assert delivery.created
    assert live.state.commits(CANCER, "results/task-12")[0].endswith(MARKER)


def test_branch_taken_meanwhile_is_looked_at_again(live: Live) -> None:
    live.state.faults.add("POST", f"/repos/{CANCER}/git/refs", 422,
                          {"message": "Reference already exists"})
    assert live.deliver().created
    assert len(live.state.commits(CANCER, "results/task-12")) == 2

    live.state.faults.add("POST", f"/repos/{CANCER}/git/refs", 422,
                          {"message": "Reference already exists"}, times=2)
    with pytest.raises(GitHubError) as caught:
        live.deliver(branch="results/task-13")
    assert caught.value.transient


def test_installation_token_is_reused_until_shortly_before_expiry(live: Live) -> None:
    def minted() -> int:
        return sum(1 for m, p in live.state.requests if p.endswith("/access_tokens"))

    live.deliver()
    live.deliver(branch="results/task-13")
    assert minted() == 1

    live.clock.advance(54 * 60)
    live.deliver(branch="results/task-14")
    assert minted() == 1
    live.clock.advance(2 * 60)  # now within five minutes of the hour
    live.deliver(branch="results/task-15")
    assert minted() == 2


def test_no_credentials_or_contents_reach_the_logs(live: Live,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        live.deliver()
    tokens = list(live.state.tokens)
    assert tokens and "results delivered" in caplog.text
    for secret in (*tokens, "cohort,n", "median 14.2"):
        assert secret not in caplog.text


# -- with a mock transport -------------------------------------------------------------

def mock_app(handler, private_key: bytes, *, now: float = START.timestamp()) -> GitHubApp:
    return GitHubApp(api_url="https://api.github.test", app_id="424242",
                     private_key_pem=private_key, transport=httpx.MockTransport(handler),
                     now=lambda: now)


@pytest.fixture(scope="module")
def key_pair() -> tuple[bytes, bytes]:
    from standins.github import generate_app_key
    return generate_app_key()


def installation_then(answer: httpx.Response):
    """A handler that grants a token, then answers every repository call with ``answer``."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/installation"):
            return httpx.Response(200, json={"id": 7})
        if request.url.path.endswith("/access_tokens"):
            return httpx.Response(201, json={"token": "ghs_" + "t" * 36,
                                             "expires_at": "2026-01-05T13:00:00Z"})
        return httpx.Response(answer.status_code, headers=answer.headers,
                              content=answer.content)

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def deliver_with(app: GitHubApp) -> Delivery:
    return app.deliver(repository=CANCER, branch="results", base_branch=None,
                       files=RESULTS, message="m", marker=MARKER)


def test_app_jwt_claims_and_headers_follow_the_contract(key_pair) -> None:
    private_key, public_key = key_pair
    handler = installation_then(httpx.Response(404, json={"message": "Not Found"}))
    with pytest.raises(GitHubError):
        deliver_with(mock_app(handler, private_key))

    lookup, token_request, *rest = handler.seen
    app_jwt = lookup.headers["authorization"].removeprefix("Bearer ")
    claims = jwt.decode(app_jwt, public_key, algorithms=["RS256"],
                        options={"verify_exp": False, "verify_iat": False})
    now = int(START.timestamp())
    assert claims == {"iat": now - 60, "exp": now - 60 + 540, "iss": "424242"}
    assert token_request.url.path == "/app/installations/7/access_tokens"
    assert token_request.read() == (b'{"repositories":["cancer-study"],'
                                    b'"permissions":{"contents":"write"}}')
    assert rest and rest[0].headers["authorization"] == "Bearer ghs_" + "t" * 36
    for request in handler.seen:
        assert request.headers["accept"] == "application/vnd.github+json"
        assert request.headers["x-github-api-version"] == "2022-11-28"


@pytest.mark.parametrize("answer, retry_after", [
    pytest.param(httpx.Response(403, headers={"x-ratelimit-remaining": "0",
                                              "x-ratelimit-reset": str(int(START.timestamp())
                                                                       + 120)}),
                 120, id="primary-403-until-reset"),
    pytest.param(httpx.Response(403, headers={"retry-after": "45"}), 45,
                 id="secondary-403-retry-after"),
    pytest.param(httpx.Response(429), 60, id="429-without-hint"),
    pytest.param(httpx.Response(429, headers={"retry-after": "1e400"}), 3600,
                 id="endless-retry-after-capped"),
    pytest.param(httpx.Response(403, headers={"retry-after": "99999999999"}), 3600,
                 id="huge-retry-after-capped"),
    pytest.param(httpx.Response(429, headers={"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}),
                 3600, id="far-date-capped"),
    pytest.param(httpx.Response(403, headers={"x-ratelimit-remaining": "0",
                                              "x-ratelimit-reset": "1e400"}),
                 3600, id="endless-reset-capped"),
])
def test_rate_limit_answers_become_rate_limited(key_pair, answer, retry_after) -> None:
    with pytest.raises(GitHubRateLimited) as caught:
        deliver_with(mock_app(installation_then(answer), key_pair[0]))
    assert caught.value.retry_after == retry_after


@pytest.mark.parametrize("status, transient", [
    pytest.param(401, False, id="401-refused"),
    pytest.param(403, False, id="403-forbidden"),
    pytest.param(422, False, id="422-invalid"),
    pytest.param(500, True, id="500-server"),
    pytest.param(503, True, id="503-unavailable"),
])
def test_failures_are_mapped_by_status(key_pair, status: int, transient: bool) -> None:
    answer = httpx.Response(status, json={"message": "Resource not accessible by integration"})
    with pytest.raises(GitHubError) as caught:
        deliver_with(mock_app(installation_then(answer), key_pair[0]))
    assert not isinstance(caught.value, RateLimited)
    assert caught.value.status == status and caught.value.transient is transient


def test_token_is_minted_again_after_a_401(key_pair) -> None:
    handler = installation_then(httpx.Response(401, json={"message": "Bad credentials"}))
    app = mock_app(handler, key_pair[0])
    for _ in range(2):
        with pytest.raises(GitHubError):
            deliver_with(app)
    assert sum(r.url.path.endswith("/access_tokens") for r in handler.seen) == 2


def test_transport_errors_are_transient(key_pair) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(GitHubError) as caught:
        deliver_with(mock_app(handler, key_pair[0]))
    assert caught.value.transient and "could not be reached" in str(caught.value)


def test_unreadable_private_key_is_refused_up_front() -> None:
    with pytest.raises(GitHubError, match="private key"):
        GitHubApp(api_url="https://api.github.test", app_id="1", private_key_pem=b"nonsense")


@pytest.mark.parametrize("repository, branch", [
    ("cancer-study", "results"), ("a/b/c", "results"), (CANCER, "bad..name"),
    (CANCER, "has space"), (CANCER, "-leading-dash"),
])
def test_malformed_names_are_refused_before_any_call(key_pair, repository, branch) -> None:
    handler = installation_then(httpx.Response(500))
    with pytest.raises(GitHubError):
        mock_app(handler, key_pair[0]).deliver(repository=repository, branch=branch,
                                               base_branch=None, files={}, message="m",
                                               marker=MARKER)
    assert handler.seen == []


def test_empty_marker_is_a_programming_error(key_pair) -> None:
    with pytest.raises(ValueError):
        mock_app(installation_then(httpx.Response(500)), key_pair[0]).deliver(
            repository=CANCER, branch="b", base_branch=None, files={}, message="m",
            marker=" ")
