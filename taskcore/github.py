"""Client of GitHub as a GitHub App: delivers a task's results as a commit on a branch.

The app proves itself with a short-lived JWT signed by its private key, trades
it for an installation token scoped to one repository, and writes through the
Git Data API (blobs, a tree, a commit, a ref), so nothing is ever cloned.

Delivery is idempotent: each results commit carries a marker in its message,
and a branch whose head already carries it is left alone. That lets the
poller retry a delivery after any failure, or after a restart, without ever
committing the same results twice.

Failures become :class:`GitHubError` here and nowhere else, chosen by status:
worth retrying (5xx, transport), refused for good (auth, validation), or
:class:`GitHubRateLimited` with the wait GitHub asked for.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

from .errors import RateLimited, ServiceError, excerpt, unreachable

log = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
MEDIA_TYPE = "application/vnd.github+json"
#: GitHub's clock may lag ours; a JWT issued "now" could look issued in the future.
JWT_BACKDATE = 60
#: GitHub refuses JWTs living over 10 minutes; stay under it even with the backdate.
JWT_LIFETIME = 9 * 60
#: Installation tokens last an hour; renew well before, so none expires mid-delivery.
TOKEN_RENEW_MARGIN = 5 * 60
#: The largest single file GitHub accepts as a blob.
MAX_BLOB_BYTES = 100 * 2**20
#: Text files up to this size go inline in the tree request instead of as separate blobs,
#: up to this much inline text per delivery.
INLINE_FILE_BYTES = 2**20
INLINE_TOTAL_BYTES = 16 * 2**20
#: When GitHub limits us without saying for how long, wait at least this long.
DEFAULT_RETRY_AFTER = 60.0
#: The longest wait taken from GitHub's headers: a larger or endless value (a clock far
#: off, a garbled header) would otherwise put a delivery off for ever, or overflow.
MAX_RETRY_AFTER = 3600.0

_REPOSITORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")
#: A conservative subset of the names git accepts for a branch.
_BRANCH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")
#: 422 answers to a ref write that mean "someone else moved the branch", worth a new look.
_REF_RACES = ("already exists", "not a fast forward", "does not exist")


class GitHubError(ServiceError):
    service = "github"


class GitHubRateLimited(RateLimited, GitHubError):
    """GitHub's primary or secondary rate limit; ``retry_after`` says how long to wait."""


@dataclass(frozen=True)
class Delivery:
    """Where results landed; ``created`` is false when an earlier delivery already did it."""

    repository: str
    branch: str
    commit_sha: str
    created: bool
    #: The branch a new results branch started from, when that was not the one asked for.
    fell_back_to: str | None = None


@dataclass(frozen=True)
class _InstallationToken:
    value: str
    expires_at: float


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return excerpt(response.text) or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        details = [e.get("message") for e in body.get("errors") or []
                   if isinstance(e, dict) and isinstance(e.get("message"), str)]
        return excerpt("; ".join([body["message"], *details]))
    return excerpt(json.dumps(body))


def _retry_after(response: httpx.Response, now: float) -> float:
    """Seconds to wait, from ``retry-after`` (seconds or a date) or the limit's reset time,
    at most :data:`MAX_RETRY_AFTER`."""
    wait: float | None = None
    header = response.headers.get("retry-after")
    if header:
        try:
            wait = max(0.0, float(header))
        except ValueError:
            try:
                wait = max(0.0, email.utils.parsedate_to_datetime(header).timestamp() - now)
            except (TypeError, ValueError, OverflowError):
                pass
    reset = response.headers.get("x-ratelimit-reset")
    if wait is None and response.headers.get("x-ratelimit-remaining") == "0" and reset:
        try:
            wait = max(1.0, float(reset) - now)
        except ValueError:
            pass
    return DEFAULT_RETRY_AFTER if wait is None else min(wait, MAX_RETRY_AFTER)


def _as_text(data: bytes) -> str | None:
    """The file as text when it round-trips exactly through UTF-8, else None."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _carries(message: str, marker: str) -> bool:
    """True when ``marker`` is a line of its own in ``message``.

    A whole line, not a substring, so the marker of task-1 is never found
    inside the marker of task-12.
    """
    wanted = marker.strip()
    return any(line.strip() == wanted for line in message.splitlines())


def _split_repository(repository: str) -> tuple[str, str]:
    if not _REPOSITORY.match(repository):
        raise GitHubError(f"repository {repository!r} is not written as owner/name")
    owner, name = repository.split("/")
    return owner, name


class GitHubApp:
    """One GitHub App; thread-safe, meant to be shared by a whole process."""

    def __init__(self, *, api_url: str, app_id: str, private_key_pem: bytes,
                 timeout: float = 30, transport: httpx.BaseTransport | None = None,
                 now: Callable[[], float] = time.time) -> None:
        try:
            self._private_key = serialization.load_pem_private_key(private_key_pem,
                                                                   password=None)
        except (ValueError, TypeError) as error:
            raise GitHubError("the GitHub App private key could not be read; it must be "
                              "the unencrypted PEM file GitHub generated") from error
        self._app_id = str(app_id)
        self._now = now
        self._tokens: dict[str, _InstallationToken] = {}
        self._lock = threading.Lock()
        self._http = httpx.Client(
            base_url=api_url, timeout=timeout, transport=transport,
            headers={"Accept": MEDIA_TYPE, "X-GitHub-Api-Version": API_VERSION,
                     "User-Agent": "fntc-task-controller"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHubApp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- calls and their failures --------------------------------------------------------

    def _call(self, method: str, path: str, *, token: str, what: str,
              body: dict[str, Any] | None = None,
              tolerate: tuple[int, ...] = ()) -> httpx.Response:
        """One request; statuses in ``tolerate`` come back for the caller to read."""
        try:
            response = self._http.request(method, path, json=body,
                                          headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as error:
            raise GitHubError(unreachable("GitHub", what, error), transient=True) from error
        if response.is_success or response.status_code in tolerate:
            return response
        raise self._failure(response, what)

    def _failure(self, response: httpx.Response, what: str) -> GitHubError:
        status = response.status_code
        text = _error_text(response)
        limited = (status == 429 or "retry-after" in response.headers
                   or response.headers.get("x-ratelimit-remaining") == "0")
        if status in (403, 429) and limited:
            wait = _retry_after(response, self._now())
            return GitHubRateLimited(f"GitHub asked to slow down while {what}; retrying in "
                                     f"about {wait:.0f} s", status=status, retry_after=wait)
        if status in (401, 403):
            return GitHubError(f"GitHub refused the app while {what} ({status}: {text}); "
                               "check the app id, its private key and the permissions the "
                               "app was granted", status=status)
        if status >= 500:
            return GitHubError(f"GitHub failed while {what} ({status}: {text})",
                               status=status, transient=True)
        return GitHubError(f"GitHub refused {what} ({status}: {text})", status=status)

    @staticmethod
    def _json(response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise GitHubError(f"GitHub answered {what} with something other than a JSON "
                              "object", status=response.status_code, transient=True)
        return body

    # -- credentials ---------------------------------------------------------------------

    def _app_jwt(self) -> str:
        issued = int(self._now()) - JWT_BACKDATE
        claims = {"iat": issued, "exp": issued + JWT_LIFETIME, "iss": self._app_id}
        return jwt.encode(claims, self._private_key, algorithm="RS256")

    def _installation_token(self, owner: str, name: str) -> str:
        """A token for this one repository, reused until shortly before it expires."""
        key = f"{owner}/{name}".lower()
        with self._lock:
            cached = self._tokens.get(key)
        if cached is not None and cached.expires_at - TOKEN_RENEW_MARGIN > self._now():
            return cached.value

        app_jwt = self._app_jwt()
        found = self._call("GET", f"/repos/{owner}/{name}/installation", token=app_jwt,
                           what=f"looking up the app's installation on {key}",
                           tolerate=(404,))
        if found.status_code == 404:
            raise GitHubError(f"the GitHub App is not installed on {owner}/{name}, or no "
                              "such repository exists: check spec.repository, or ask an "
                              f"administrator of {owner}/{name} to install the app on it "
                              "with write access to contents; delivery is retried",
                              status=404)
        installation_id = self._json(found, "the installation lookup").get("id")
        if not isinstance(installation_id, int):
            raise GitHubError(f"GitHub answered the installation lookup for {key} without "
                              "an installation id", transient=True)
        what = f"creating an access token for {key}"
        # Scoped to the one repository and to contents only: least privilege per delivery.
        body = {"repositories": [name], "permissions": {"contents": "write"}}
        path = f"/app/installations/{installation_id}/access_tokens"
        answer = self._json(self._call("POST", path, token=app_jwt, what=what, body=body),
                            what)
        try:
            expires_at = datetime.fromisoformat(answer["expires_at"]).timestamp()
            token = _InstallationToken(str(answer["token"]), expires_at)
        except (KeyError, TypeError, ValueError) as error:
            raise GitHubError(f"GitHub answered {what} without a usable token",
                              transient=True) from error
        with self._lock:
            self._tokens[key] = token
        return token.value

    def _forget_token(self, owner: str, name: str) -> None:
        with self._lock:
            self._tokens.pop(f"{owner}/{name}".lower(), None)

    # -- delivery ------------------------------------------------------------------------

    def deliver(self, *, repository: str, branch: str, base_branch: str | None,
                files: dict[str, bytes], message: str, marker: str,
                replace_folder: str | None = None) -> Delivery:
        """Commit ``files`` to ``branch`` of ``repository`` once, whatever the retries.

        A new branch starts from ``base_branch`` when that exists, else from the
        repository's default branch; an existing branch gets the commit on top
        of its head. The commit message always carries ``marker``. With
        ``replace_folder`` (a path ending in ``/``), files the starting point holds
        in that folder and ``files`` does not are removed, so the folder shows
        this delivery alone.
        """
        if not marker.strip():
            raise ValueError("a delivery needs a non-empty marker to stay idempotent")
        owner, name = _split_repository(repository)
        for path, data in files.items():
            if len(data) > MAX_BLOB_BYTES:
                raise GitHubError(f"results file {path!r} is {len(data)} bytes, over the "
                                  f"{MAX_BLOB_BYTES} bytes GitHub accepts for one file")
        if not _BRANCH.match(branch) or ".." in branch or branch.endswith((".lock", "/")):
            raise GitHubError(f"{branch!r} cannot be a git branch name; use letters, digits "
                              "and - _ . / only")
        if not _carries(message, marker):
            message = f"{message.rstrip()}\n\n{marker}"

        try:
            return _DeliveryRun(self, owner, name, self._installation_token(owner, name)).run(
                branch=branch, base_branch=base_branch, files=files, message=message,
                marker=marker, replace_folder=replace_folder)
        except GitHubError as error:
            if error.status == 401:
                # A revoked or rotated token: the next attempt should mint a fresh one.
                self._forget_token(owner, name)
            raise
        except (KeyError, TypeError) as error:
            raise GitHubError(f"GitHub answered in an unexpected shape while delivering to "
                              f"{repository}", transient=True) from error


class _DeliveryRun:
    """The Git Data API steps of one delivery, with one repository's token."""

    def __init__(self, app: GitHubApp, owner: str, name: str, token: str) -> None:
        self.app = app
        self.repository = f"{owner}/{name}"
        self.base = f"/repos/{owner}/{name}"
        self.token = token
        self.blobs: dict[str, str] = {}  # path -> blob id, kept across attempts
        self.fell_back_to: str | None = None

    def call(self, method: str, path: str, *, what: str, body: dict[str, Any] | None = None,
             tolerate: tuple[int, ...] = ()) -> httpx.Response:
        return self.app._call(method, self.base + path, token=self.token, what=what,
                              body=body, tolerate=tolerate)

    def run(self, *, branch: str, base_branch: str | None, files: dict[str, bytes],
            message: str, marker: str, replace_folder: str | None = None) -> Delivery:
        # Two attempts: if another writer creates or moves the branch between our
        # read and our write, the second look sees it (and maybe our marker).
        for attempt in (1, 2):
            head = self.branch_head(branch)
            if head is not None:
                commit = self.commit(head)
                if _carries(str(commit.get("message", "")), marker):
                    log.info("results already delivered", extra={
                        "repository": self.repository, "branch": branch, "commit": head})
                    return Delivery(self.repository, branch, head, created=False)
                parent = head
            else:
                parent = self.starting_point(base_branch)
                commit = self.commit(parent)

            base_tree = str(commit["tree"]["sha"])
            held = self.files_under(base_tree, replace_folder) if replace_folder else {}
            stale = {path: kind for path, kind in held.items() if path not in files}
            tree = self.write_tree(base_tree, files, remove=stale)
            created = self.app._json(self.call(
                "POST", "/git/commits", what=f"creating the results commit in "
                f"{self.repository}", body={"message": message, "tree": tree,
                                             "parents": [parent]}), "the commit")
            sha = str(created["sha"])
            if self.move_branch(branch, sha, exists=head is not None):
                log.info("results delivered", extra={
                    "repository": self.repository, "branch": branch, "commit": sha,
                    "files": len(files), "attempt": attempt})
                return Delivery(self.repository, branch, sha, created=True,
                                fell_back_to=self.fell_back_to)
            log.info("branch changed while delivering; looking again", extra={
                "repository": self.repository, "branch": branch, "attempt": attempt})
        raise GitHubError(f"branch {branch} of {self.repository} kept changing while results "
                          "were delivered; will try again", transient=True)

    def branch_head(self, branch: str) -> str | None:
        """The commit a branch points at; None when absent; an error for an empty repo."""
        response = self.call("GET", f"/git/ref/heads/{quote(branch, safe='/')}",
                             what=f"reading branch {branch} of {self.repository}",
                             tolerate=(404, 409))
        if response.status_code == 404:
            return None
        if response.status_code == 409:
            raise GitHubError(f"{self.repository} has no commits yet and GitHub cannot add "
                              "files to an empty repository; push a first commit (a README "
                              "is enough) and the results will follow", status=409)
        body = self.app._json(response, f"the branch {branch}")
        return str(body["object"]["sha"])

    def starting_point(self, base_branch: str | None) -> str:
        """The commit a new results branch starts from."""
        if base_branch:
            head = self.branch_head(base_branch)
            if head is not None:
                return head
            log.info("base branch absent; starting from the default branch", extra={
                "repository": self.repository, "base_branch": base_branch})
        about = self.app._json(self.call("GET", "", what=f"reading {self.repository}"),
                               "the repository")
        default = str(about.get("default_branch") or "main")
        head = self.branch_head(default)
        if head is None:
            raise GitHubError(f"the default branch {default} of {self.repository} does not "
                              "exist; name an existing base branch", status=404)
        if base_branch and base_branch != default:
            self.fell_back_to = default
        return head

    def commit(self, sha: str) -> dict[str, Any]:
        return self.app._json(self.call("GET", f"/git/commits/{sha}",
                                        what=f"reading commit {sha} of {self.repository}"),
                              "the commit")

    def files_under(self, tree: str, folder: str) -> dict[str, tuple[str, str]]:
        """Every file below ``folder`` (``a/b/``) in ``tree``, as path: (mode, type).

        The folder is reached one level at a time rather than by listing the
        whole repository, which GitHub cuts short for large trees.
        """
        for part in [part for part in folder.split("/") if part]:
            listing = self.tree(tree, recursive=False)
            found = next((entry for entry in listing.get("tree") or []
                          if entry.get("path") == part and entry.get("type") == "tree"), None)
            if found is None:
                return {}
            tree = str(found["sha"])
        listing = self.tree(tree, recursive=True)
        if listing.get("truncated"):
            # NB: only a folder of about 100,000 files gets here; removing it needs a clone.
            raise GitHubError(f"folder {folder} of {self.repository} holds too many files to "
                              "replace through the API; remove it from the base branch")
        prefix = folder if folder.endswith("/") else folder + "/"
        return {prefix + str(entry["path"]): (str(entry["mode"]), str(entry["type"]))
                for entry in listing.get("tree") or [] if entry.get("type") != "tree"}

    def tree(self, sha: str, *, recursive: bool) -> dict[str, Any]:
        path = f"/git/trees/{sha}" + ("?recursive=1" if recursive else "")
        return self.app._json(self.call("GET", path, what=f"reading a tree of "
                                        f"{self.repository}"), "the tree")

    def write_tree(self, base_tree: str, files: dict[str, bytes], *,
                   remove: dict[str, tuple[str, str]] | None = None) -> str:
        """Lay ``files`` over ``base_tree``, drop the paths in ``remove``, and return the
        new tree's id.

        Text files travel inside the tree request itself; only binary or large
        files are uploaded as blobs first. GitHub counts every blob as a
        content-creating request against its secondary limit (a few dozen a
        minute), so a thousand small CSVs must not become a thousand calls.
        """
        if not files and not remove:
            return base_tree
        # A null sha removes a file; removals go first, so a new file may take the
        # place of a folder that goes.
        entries: list[dict[str, str | None]] = [
            {"path": path, "mode": mode, "type": kind, "sha": None}
            for path, (mode, kind) in sorted((remove or {}).items())]
        inline_left = INLINE_TOTAL_BYTES
        for path, data in sorted(files.items()):
            entry = {"path": path, "mode": "100644", "type": "blob"}
            text = _as_text(data) if len(data) <= min(INLINE_FILE_BYTES, inline_left) else None
            if text is not None:
                inline_left -= len(data)
                entries.append({**entry, "content": text})
                continue
            if path not in self.blobs:
                body = {"content": base64.b64encode(data).decode(), "encoding": "base64"}
                blob = self.app._json(self.call(
                    "POST", "/git/blobs", body=body,
                    what=f"uploading {path} to {self.repository}"), "the blob")
                self.blobs[path] = str(blob["sha"])
            entries.append({**entry, "sha": self.blobs[path]})
        tree = self.app._json(self.call(
            "POST", "/git/trees", body={"base_tree": base_tree, "tree": entries},
            what=f"creating the results tree in {self.repository}"), "the tree")
        return str(tree["sha"])

    def move_branch(self, branch: str, sha: str, *, exists: bool) -> bool:
        """Point ``branch`` at ``sha``; False when someone else changed it meanwhile."""
        what = f"updating branch {branch} of {self.repository}"
        if exists:
            response = self.call("PATCH", f"/git/refs/heads/{quote(branch, safe='/')}",
                                 body={"sha": sha, "force": False}, what=what,
                                 tolerate=(422,))
        else:
            response = self.call("POST", "/git/refs", what=what, tolerate=(422,),
                                 body={"ref": f"refs/heads/{branch}", "sha": sha})
        if response.status_code != 422:
            return True
        if any(race in _error_text(response).lower() for race in _REF_RACES):
            return False
        raise self.app._failure(response, what)
