"""The GitHub stand-in's REST routes: installations, tokens, Git Data API, pulls.

Handlers take the state's lock for each whole request, so a request sees and
leaves the repositories consistent even while a test inspects them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from starlette.responses import Response

from standins.github_auth import (
    TOKEN_LIFETIME,
    ApiError,
    TokenGrant,
    bearer,
    narrowed_permissions,
    new_installation_token,
    verify_app_jwt,
)
from standins.github_git import GitObjectError, Signature
from standins.github_payloads import (
    api_url,
    apply_entries,
    blob_content,
    commit_json,
    json_body,
    ref_json,
    resolve_tree,
    signature,
    text_field,
    tree_json,
    validation_failed,
)

if TYPE_CHECKING:
    from standins.github import GitHubState, Repository


# -- who is calling ---------------------------------------------------------------------

def _reach(state: GitHubState, request: Request, owner: str, repo: str, *,
           permission: str, level: str, git_data: bool = False) -> Repository:
    """The repository an installation token may use for this call, or the refusal.

    A repository outside the token's reach is a 404, as at GitHub, so a token
    cannot even learn that it exists.
    """
    token = bearer(request.headers.get("authorization"))
    if token is None:
        raise ApiError(401, "Requires authentication")
    grant = state.tokens.get(token)
    if grant is None or grant.expires_at <= state.clock.now():
        raise ApiError(401, "Bad credentials")
    key = f"{owner}/{repo}".lower()
    repository = state.repos.get(key)
    installation = state.installations.get(grant.installation_id)
    if (repository is None or key not in grant.repositories or installation is None
            or key not in installation.repositories):
        raise ApiError(404, "Not Found")
    if not grant.allows(permission, level):
        raise ApiError(403, "Resource not accessible by integration")
    if git_data and repository.empty:
        raise ApiError(409, "Git Repository is empty.")
    return repository


def _verify_app(state: GitHubState, request: Request) -> None:
    verify_app_jwt(request.headers.get("authorization"), public_key_pem=state.public_key_pem,
                   accepted_issuers={state.app_id, state.client_id}, now=state.clock.now())


# -- routes -----------------------------------------------------------------------------

def add_api_routes(app: FastAPI, state: GitHubState) -> None:
    """GitHub's REST routes the product uses, answering from ``state``."""

    @app.get("/repos/{owner}/{repo}/installation")
    def repository_installation(owner: str, repo: str, request: Request) -> dict:
        with state.lock:
            _verify_app(state, request)
            key = f"{owner}/{repo}".lower()
            for installation in state.installations.values():
                if key in installation.repositories:
                    return {"id": installation.id, "app_id": int(state.app_id),
                            "app_slug": state.app_slug,
                            "account": {"login": installation.account, "type": "Organization"},
                            "repository_selection": "selected",
                            "permissions": dict(state.app_permissions)}
        raise ApiError(404, "Not Found")

    @app.post("/app/installations/{installation_id}/access_tokens", status_code=201)
    async def create_installation_token(installation_id: int, request: Request) -> dict:
        body = await json_body(request)
        with state.lock:
            _verify_app(state, request)
            installation = state.installations.get(installation_id)
            if installation is None:
                raise ApiError(404, "Not Found")
            reachable = set(installation.repositories)
            names = body.get("repositories")
            if names is not None:
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise ApiError(422, "'repositories' must be a list of repository names.")
                wanted = {f"{installation.account}/{name}".lower() for name in names}
                if not wanted <= reachable:
                    raise ApiError(422, "At least one repository asked for does not exist or "
                                        "is not reachable by this installation.")
                reachable = wanted
            permissions = narrowed_permissions(state.app_permissions, body.get("permissions"))
            expires_at = state.clock.now() + timedelta(seconds=TOKEN_LIFETIME)
            token = new_installation_token()
            state.tokens[token] = TokenGrant(installation_id, frozenset(reachable),
                                             permissions, expires_at)
            repos = [state.repos[key] for key in sorted(reachable)]
        return {"token": token, "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "permissions": permissions, "repository_selection": "selected",
                "repositories": [{"id": r.id, "name": r.name, "full_name": r.full_name}
                                 for r in repos]}

    @app.get("/repos/{owner}/{repo}")
    def get_repository(owner: str, repo: str, request: Request) -> dict:
        with state.lock:
            repository = _reach(state, request, owner, repo,
                                permission="metadata", level="read")
            return {"id": repository.id, "name": repository.name,
                    "full_name": repository.full_name, "private": True,
                    "owner": {"login": repository.owner},
                    "default_branch": repository.default_branch,
                    "size": 0 if repository.empty else 1}

    @app.get("/repos/{owner}/{repo}/git/ref/{ref:path}")
    def get_ref(owner: str, repo: str, ref: str, request: Request) -> dict:
        with state.lock:
            repository = _reach(state, request, owner, repo, permission="contents",
                                level="read", git_data=True)
            full_ref = f"refs/{ref}"
            if full_ref not in repository.refs:
                raise ApiError(404, "Not Found")
            return ref_json(request, repository, full_ref, repository.refs[full_ref])

    @app.post("/repos/{owner}/{repo}/git/blobs", status_code=201)
    async def create_blob(owner: str, repo: str, request: Request) -> dict:
        body = await json_body(request)
        with state.lock:
            _reach(state, request, owner, repo, permission="contents", level="write",
                   git_data=True)
        data = blob_content(body, state.max_blob_bytes)
        with state.lock:
            repository = _reach(state, request, owner, repo, permission="contents",
                                level="write", git_data=True)
            sha = repository.objects.put_blob(data)
        return {"sha": sha, "url": api_url(request, f"/repos/{owner}/{repo}/git/blobs/{sha}")}

    @app.post("/repos/{owner}/{repo}/git/trees", status_code=201)
    async def create_tree(owner: str, repo: str, request: Request) -> dict:
        body = await json_body(request)
        with state.lock:
            repository = _reach(state, request, owner, repo, permission="contents",
                                level="write", git_data=True)
            objects = repository.objects
            leaves: dict[str, tuple[str, str]] = {}
            base_tree = body.get("base_tree")
            if base_tree is not None:
                if base_tree not in objects.trees:
                    raise ApiError(422, f"base_tree {base_tree} is not a valid tree")
                leaves = objects.flatten(base_tree)
            apply_entries(objects, leaves, body.get("tree"))
            try:
                sha = objects.build_tree(leaves)
            except GitObjectError as error:
                raise ApiError(422, f"Invalid tree: {error}.") from None
            return tree_json(request, repository, sha, recursive=False)

    @app.get("/repos/{owner}/{repo}/git/trees/{tree}")
    def get_tree(owner: str, repo: str, tree: str, request: Request,
                 recursive: str | None = None) -> dict:
        with state.lock:
            repository = _reach(state, request, owner, repo, permission="contents",
                                level="read", git_data=True)
            sha = resolve_tree(repository, tree)
            if sha is None:
                raise ApiError(404, "Not Found")
            # GitHub recurses for any value of ``recursive``, even "0" or "false".
            return tree_json(request, repository, sha, recursive=recursive is not None)

    @app.post("/repos/{owner}/{repo}/git/commits", status_code=201)
    async def create_commit(owner: str, repo: str, request: Request) -> dict:
        body = await json_body(request)
        with state.lock:
            repository = _reach(state, request, owner, repo, permission="contents",
                                level="write", git_data=True)
            objects = repository.objects
            message = body.get("message")
            if not isinstance(message, str):
                raise ApiError(422, "Invalid request: 'message' is missing or not a string.")
            tree = text_field(body, "tree")
            parents = body.get("parents", [])
            if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
                raise ApiError(422, "Invalid request: 'parents' must be a list of commit ids.")
            if tree not in objects.trees:
                raise ApiError(422, "Tree SHA does not exist")
            if any(parent not in objects.commits for parent in parents):
                raise ApiError(422, "Parent SHA does not exist or is not a commit object")
            bot = f"{state.app_slug}[bot]"
            default = Signature(bot, f"{state.app_id}+{bot}@users.noreply.github.com",
                                state.clock.now())
            author = signature(body.get("author"), default)
            committer = signature(body.get("committer"), author)
            commit = objects.put_commit(tree=tree, parents=parents, message=message,
                                        author=author, committer=committer)
            return commit_json(request, repository, commit)

    @app.get("/repos/{owner}/{repo}/git/commits/{sha}")
    def get_commit(owner: str, repo: str, sha: str, request: Request) -> dict:
        with state.lock:
            repository = _reach(state, request, owner, repo, permission="contents",
                                level="read", git_data=True)
            commit = repository.objects.commits.get(sha)
            if commit is None:
                raise ApiError(404, "Not Found")
            return commit_json(request, repository, commit)

    @app.post("/repos/{owner}/{repo}/git/refs", status_code=201)
    async def create_ref(owner: str, repo: str, request: Request) -> dict:
        body = await json_body(request)
        with state.lock:
            repository = _reach(state, request, owner, repo, permission="contents",
                                level="write", git_data=True)
            ref, sha = text_field(body, "ref"), text_field(body, "sha")
            if not ref.startswith("refs/") or ref.count("/") < 2:
                raise ApiError(422, f"Reference name {ref!r} is not valid; it must be fully "
                                    "qualified, such as refs/heads/name.")
            if sha not in repository.objects.commits:
                raise ApiError(422, "Object does not exist")
            if ref in repository.refs:
                raise ApiError(422, "Reference already exists")
            repository.refs[ref] = sha
            return ref_json(request, repository, ref, sha)

    @app.patch("/repos/{owner}/{repo}/git/refs/{ref:path}")
    async def update_ref(owner: str, repo: str, ref: str, request: Request) -> dict:
        body = await json_body(request)
        with state.lock:
            repository = _reach(state, request, owner, repo, permission="contents",
                                level="write", git_data=True)
            sha = text_field(body, "sha")
            force = body.get("force", False) is True
            full_ref = f"refs/{ref}"
            if full_ref not in repository.refs:
                raise ApiError(422, "Reference does not exist")
            if sha not in repository.objects.commits:
                raise ApiError(422, "Object does not exist")
            current = repository.refs[full_ref]
            if not force and not repository.objects.is_ancestor(current, sha):
                raise ApiError(422, "Update is not a fast forward")
            repository.refs[full_ref] = sha
            return ref_json(request, repository, full_ref, sha)

    @app.delete("/repos/{owner}/{repo}/git/refs/{ref:path}", status_code=204)
    def delete_ref(owner: str, repo: str, ref: str, request: Request) -> Response:
        with state.lock:
            repository = _reach(state, request, owner, repo, permission="contents",
                                level="write", git_data=True)
            if repository.refs.pop(f"refs/{ref}", None) is None:
                raise ApiError(422, "Reference does not exist")
        return Response(status_code=204)

    @app.post("/repos/{owner}/{repo}/pulls", status_code=201)
    async def create_pull(owner: str, repo: str, request: Request) -> dict:
        body = await json_body(request)
        with state.lock:
            repository = _reach(state, request, owner, repo,
                                permission="pull_requests", level="write")
            return _open_pull(request, repository, body)


def _open_pull(request: Request, repo: Repository, body: dict) -> dict:
    title = text_field(body, "title")
    head, base = text_field(body, "head"), text_field(body, "base")
    head_owner, _, head_branch = head.rpartition(":")
    if head_owner and head_owner.lower() != repo.owner.lower():
        raise validation_failed("PullRequest", "Pull requests from forks are not "
                                                "supported here.", "head")
    head_sha = repo.refs.get(f"refs/heads/{head_branch}")
    base_sha = repo.refs.get(f"refs/heads/{base}")
    if head_sha is None:
        raise validation_failed("PullRequest", "The head branch does not exist.", "head")
    if base_sha is None:
        raise validation_failed("PullRequest", "The base branch does not exist.", "base")
    label = f"{repo.owner}:{head_branch}"
    if any(p["head"]["ref"] == head_branch and p["state"] == "open" for p in repo.pulls):
        raise validation_failed("PullRequest", f"A pull request already exists for {label}.")
    if repo.objects.is_ancestor(head_sha, base_sha):
        raise validation_failed("PullRequest", f"No commits between {base} and {head_branch}")
    number = len(repo.pulls) + 1
    pull = {"number": number, "state": "open", "title": title, "body": body.get("body"),
            "html_url": f"https://github.com/{repo.full_name}/pull/{number}",
            "url": api_url(request, f"/repos/{repo.full_name}/pulls/{number}"),
            "head": {"ref": head_branch, "sha": head_sha, "label": label},
            "base": {"ref": base, "sha": base_sha, "label": f"{repo.owner}:{base}"},
            "draft": bool(body.get("draft", False))}
    repo.pulls.append(pull)
    return pull


def add_control_routes(app: FastAPI, state: GitHubState) -> None:
    """``/_standin/`` endpoints that let the demo look inside without a token."""

    @app.get("/_standin/repos/{owner}/{repo}/branches/{branch:path}/files")
    def branch_files(owner: str, repo: str, branch: str) -> dict:
        try:
            files = state.branch_files(f"{owner}/{repo}", branch)
        except KeyError:
            raise ApiError(404, f"No branch {branch!r} in {owner}/{repo}.") from None
        return {path: data.decode("utf-8", errors="replace")
                for path, data in sorted(files.items())}

    @app.get("/_standin/repos/{owner}/{repo}/branches/{branch:path}/commits")
    def branch_commits(owner: str, repo: str, branch: str) -> dict:
        try:
            return {"messages": state.commits(f"{owner}/{repo}", branch)}
        except KeyError:
            raise ApiError(404, f"No branch {branch!r} in {owner}/{repo}.") from None
