"""A stand-in for GitHub as a GitHub App sees it, served from memory.

It covers what results delivery needs: finding the app's installation for a
repository, minting installation tokens, the Git Data API (blobs, trees,
commits, refs), pull requests, and rate-limit headers. Its answers follow
GitHub's, quirks included: an empty repository refuses the Git Data API with
409, a branch update must be a fast-forward unless forced, a repository the
token cannot reach is a 404 rather than a 403.

Tests and the demo look inside with :meth:`GitHubState.branch_files`,
:meth:`GitHubState.commits`, :attr:`GitHubState.requests`, and
``GET /_standin/repos/{owner}/{repo}/branches/{branch}/files``.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from standins.clock import Clock
from standins.faults import CONTROL_PREFIX, Faults, install
from standins.github_auth import ApiError, TokenGrant, bearer
from standins.github_git import FILE_MODE, ObjectStore, Signature
from standins.github_routes import add_api_routes, add_control_routes

API_VERSION = "2022-11-28"
MEDIA_TYPE = "application/vnd.github+json"
#: The largest blob GitHub accepts through the API.
MAX_BLOB_BYTES = 100 * 2**20
RATE_LIMIT = 5000
RATE_WINDOW = 3600
SANDBOX_OWNER = "fntc-sandbox"
REQUEST_LOG_SIZE = 10_000


@dataclass
class Repository:
    owner: str
    name: str
    id: int
    default_branch: str = "main"
    refs: dict[str, str] = field(default_factory=dict)  # "refs/heads/x" -> commit id
    objects: ObjectStore = field(default_factory=ObjectStore)
    pulls: list[dict] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def empty(self) -> bool:
        return not self.refs


@dataclass
class Installation:
    id: int
    account: str
    repositories: set[str] = field(default_factory=set)  # lower-case full names


class GitHubState:
    """Everything the stand-in knows, guarded by one lock.

    Route handlers and test code both go through the lock, because the server
    answers from its own threads while a test inspects or changes the state.
    """

    def __init__(self, clock: Clock, *, public_key_pem: bytes, app_id: str = "424242",
                 client_id: str = "Iv23sandboxapp") -> None:
        self.clock = clock
        self.app_id = app_id
        self.client_id = client_id
        self.public_key_pem = public_key_pem
        self.app_slug = "fntc-sandbox-app"
        self.app_permissions = {"contents": "write", "pull_requests": "write",
                                "metadata": "read"}
        self.max_blob_bytes = MAX_BLOB_BYTES
        self.rate_limit = RATE_LIMIT
        self.faults = Faults()
        #: ``(method, path)`` of the latest API requests, in order; never headers or
        #: bodies. Bounded so a long-running demo does not grow without end.
        self.requests: deque[tuple[str, str]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.lock = threading.RLock()
        self.repos: dict[str, Repository] = {}
        self.installations: dict[int, Installation] = {}
        self.tokens: dict[str, TokenGrant] = {}
        self._rate_usage: dict[str, tuple[float, int]] = {}
        self._next_id = 1000

    # -- setting up ---------------------------------------------------------------------

    def add_repository(self, full_name: str, *, installed: bool = True,
                       files: dict[str, bytes] | None = None,
                       default_branch: str = "main") -> Repository:
        """Create a repository; with ``files``, its default branch gets one commit."""
        owner, _, name = full_name.partition("/")
        with self.lock:
            self._next_id += 1
            repo = Repository(owner, name, self._next_id, default_branch)
            self.repos[full_name.lower()] = repo
            if files is not None:
                blobs = {path: (FILE_MODE, repo.objects.put_blob(data))
                         for path, data in files.items()}
                author = Signature("Sandbox Maintainer", "maintainer@example.org",
                                   self.clock.now())
                commit = repo.objects.put_commit(
                    tree=repo.objects.build_tree(blobs), parents=[],
                    message="Initial commit", author=author, committer=author)
                repo.refs[f"refs/heads/{default_branch}"] = commit.sha
            if installed:
                self.set_installed(full_name, True)
            return repo

    def set_installed(self, full_name: str, installed: bool) -> None:
        """Install the app on a repository (one installation per owner) or remove it."""
        key = full_name.lower()
        with self.lock:
            owner = self.repos[key].owner
            installation = next((i for i in self.installations.values()
                                 if i.account.lower() == owner.lower()), None)
            if installation is None:
                self._next_id += 1
                installation = Installation(self._next_id, owner)
                self.installations[installation.id] = installation
            if installed:
                installation.repositories.add(key)
            else:
                installation.repositories.discard(key)

    # -- looking inside -----------------------------------------------------------------

    def repository(self, full_name: str) -> Repository:
        with self.lock:
            return self.repos[full_name.lower()]

    def head(self, full_name: str, branch: str) -> str | None:
        """The commit a branch points at, or None when the branch does not exist."""
        with self.lock:
            return self.repository(full_name).refs.get(f"refs/heads/{branch}")

    def branch_files(self, full_name: str, branch: str) -> dict[str, bytes]:
        """Every file on a branch, by path. KeyError when the branch does not exist."""
        with self.lock:
            repo = self.repository(full_name)
            sha = repo.refs[f"refs/heads/{branch}"]
            leaves = repo.objects.flatten(repo.objects.commits[sha].tree)
            return {path: repo.objects.blobs[blob] for path, (_, blob) in leaves.items()}

    def commits(self, full_name: str, branch: str) -> list[str]:
        """Commit messages on a branch along first parents, newest first."""
        with self.lock:
            repo = self.repository(full_name)
            sha = repo.refs[f"refs/heads/{branch}"]
            return [commit.message for commit in repo.objects.first_parent_history(sha)]

    def pull_requests(self, full_name: str) -> list[dict]:
        with self.lock:
            return [dict(pull) for pull in self.repository(full_name).pulls]

    # -- rate limits --------------------------------------------------------------------

    def consume_rate(self, bucket: str) -> tuple[dict[str, str], bool]:
        """Count one request against ``bucket``; return the headers and whether it is over.

        Installation tokens and the app JWT each have their own hourly budget,
        as at GitHub; the window restarts once the stand-in's clock passes reset.
        """
        now = self.clock.now().timestamp()
        with self.lock:
            reset, used = self._rate_usage.get(bucket, (now + RATE_WINDOW, 0))
            if now >= reset:
                reset, used = now + RATE_WINDOW, 0
            over = used >= self.rate_limit
            if not over:
                used += 1
            self._rate_usage[bucket] = (reset, used)
        headers = {"x-ratelimit-limit": str(self.rate_limit),
                   "x-ratelimit-remaining": str(self.rate_limit - used),
                   "x-ratelimit-used": str(used), "x-ratelimit-reset": str(int(reset)),
                   "x-ratelimit-resource": "core"}
        return headers, over

    def rate_bucket(self, authorization: str | None) -> str:
        with self.lock:
            grant = self.tokens.get(bearer(authorization) or "")
        return f"installation-{grant.installation_id}" if grant else "app"


def _check_headers(request: Request) -> None:
    """Refuse calls without the media type and API version every call must carry.

    NB: stricter than GitHub, which falls back to defaults when they are
    missing; the product must always send them, so their absence is an error here.
    """
    version = request.headers.get("x-github-api-version")
    if version != API_VERSION:
        raise ApiError(400, f"API version {version!r} is not supported; send "
                            f"X-GitHub-Api-Version: {API_VERSION}.")
    accept = request.headers.get("accept", "")
    if MEDIA_TYPE not in accept and "application/json" not in accept:
        raise ApiError(415, f"Unsupported 'Accept' header {accept!r}; send {MEDIA_TYPE}.")


def create_github_app(state: GitHubState) -> FastAPI:
    """The HTTP face of ``state``: GitHub's REST routes plus the control endpoints."""
    app = FastAPI(title="GitHub stand-in", openapi_url=None, docs_url=None,
                  redoc_url=None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return JSONResponse(error.body(), error.status, headers=error.headers)

    add_api_routes(app, state)
    add_control_routes(app, state)
    install(app, state.faults)

    # Added after the fault middleware so it wraps it: injected faults are
    # recorded and carry rate-limit headers like any other answer.
    @app.middleware("http")
    async def github_edge(request: Request, call_next) -> Response:
        path = request.url.path
        if path.startswith(CONTROL_PREFIX):
            return await call_next(request)
        with state.lock:
            state.requests.append((request.method, path))
        rate_headers, over = state.consume_rate(
            state.rate_bucket(request.headers.get("authorization")))
        try:
            _check_headers(request)
            if over:
                raise ApiError(403, "API rate limit exceeded; wait for the reset time "
                                    "in x-ratelimit-reset.")
        except ApiError as error:
            response: Response = JSONResponse(error.body(), error.status)
        else:
            response = await call_next(request)
        for name, value in rate_headers.items():
            response.headers.setdefault(name, value)
        return response

    return app


def generate_app_key() -> tuple[bytes, bytes]:
    """A fresh RSA key pair for the app: (private PEM as GitHub hands it out, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem


def default_github_state(clock: Clock) -> tuple[GitHubState, bytes]:
    """The sandbox's GitHub: the app's key pair and four repositories.

    ``cancer-study`` and ``admissions-study`` have the app installed and a
    README on ``main``; ``not-installed`` exists without the app;
    ``empty-repo`` has the app but no commits at all.
    """
    private_pem, public_pem = generate_app_key()
    state = GitHubState(clock, public_key_pem=public_pem)
    for name in ("cancer-study", "admissions-study"):
        readme = f"# {name}\n\nSandbox repository that receives task results.\n"
        state.add_repository(f"{SANDBOX_OWNER}/{name}", files={"README.md": readme.encode()})
    state.add_repository(f"{SANDBOX_OWNER}/not-installed", installed=False,
                         files={"README.md": b"# not-installed\n"})
    state.add_repository(f"{SANDBOX_OWNER}/empty-repo")
    return state, private_pem

