"""What the GitHub stand-in reads from requests and writes into answers.

Request bodies are checked here the way GitHub checks them (400 for broken
JSON, 422 for a body that makes no sense), and objects are rendered in
GitHub's JSON shapes, so the routes only decide what happens.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from fastapi import Request

from standins.github_auth import ApiError
from standins.github_git import (
    LEAF_MODES,
    SUBMODULE_MODE,
    TREE_MODE,
    Commit,
    ObjectStore,
    Signature,
)

if TYPE_CHECKING:
    from standins.github import Repository


# -- reading requests -------------------------------------------------------------------

async def json_body(request: Request) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "Problems parsing JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def text_field(body: dict, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(422, f"Invalid request: {name!r} is missing or is not a string.")
    return value


def check_path(path: object) -> str:
    """A tree path git accepts: relative, no empty, ``.``, ``..`` or ``.git`` parts."""
    if not isinstance(path, str) or not path:
        raise ApiError(422, "Invalid tree entry: 'path' is missing.")
    parts = path.split("/")
    if any(part in ("", ".", "..") or part.lower() == ".git" for part in parts):
        raise ApiError(422, f"Invalid tree entry path {path!r}.")
    return path


def blob_content(body: dict, limit: int) -> bytes:
    """The bytes a blob request carries, refused when over GitHub's size limit."""
    content = body.get("content")
    encoding = body.get("encoding", "utf-8")
    if not isinstance(content, str):
        raise ApiError(422, "Invalid request: 'content' is missing or is not a string.")
    if encoding not in ("utf-8", "base64"):
        raise ApiError(422, f"Invalid request: encoding {encoding!r} is not supported.")
    # Refuse by size before decoding, so an oversized upload is never held twice.
    too_large = ApiError(422, f"The blob is larger than the {limit} bytes GitHub accepts.")
    if len(content) > limit * 4 // 3 + 4:
        raise too_large
    if encoding == "base64":
        try:
            data = base64.b64decode("".join(content.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(422, "Invalid request: 'content' is not valid base64.") from None
    else:
        data = content.encode()
    if len(data) > limit:
        raise too_large
    return data


def signature(value: object, default: Signature) -> Signature:
    if value is None:
        return default
    if not isinstance(value, dict):
        raise ApiError(422, "Invalid request: an author or committer must be an object.")
    name, email = value.get("name"), value.get("email")
    if not isinstance(name, str) or not isinstance(email, str):
        raise ApiError(422, "Invalid request: an author or committer needs a name and email.")
    date = default.date
    if value.get("date") is not None:
        try:
            date = datetime.fromisoformat(str(value["date"]))
        except ValueError:
            raise ApiError(422, "Invalid request: the date is not ISO 8601.") from None
        if date.tzinfo is None:
            date = date.replace(tzinfo=timezone.utc)
    return Signature(name, email, date)


# -- answers ----------------------------------------------------------------------------

def api_url(request: Request, path: str) -> str:
    return str(request.base_url).rstrip("/") + path


def ref_json(request: Request, repo: Repository, ref: str, sha: str) -> dict:
    base = f"/repos/{repo.full_name}/git"
    return {"ref": ref, "url": api_url(request, f"{base}/{ref}"),
            "object": {"sha": sha, "type": "commit",
                       "url": api_url(request, f"{base}/commits/{sha}")}}


def commit_json(request: Request, repo: Repository, commit: Commit) -> dict:
    base = f"/repos/{repo.full_name}/git"

    def person(who: Signature) -> dict:
        date = who.date.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"name": who.name, "email": who.email, "date": date}

    return {"sha": commit.sha, "url": api_url(request, f"{base}/commits/{commit.sha}"),
            "message": commit.message, "author": person(commit.author),
            "committer": person(commit.committer),
            "tree": {"sha": commit.tree, "url": api_url(request, f"{base}/trees/{commit.tree}")},
            "parents": [{"sha": sha, "url": api_url(request, f"{base}/commits/{sha}")}
                        for sha in commit.parents],
            "verification": {"verified": False, "reason": "unsigned"}}


def tree_json(request: Request, repo: Repository, sha: str, *, recursive: bool) -> dict:
    return {"sha": sha, "url": api_url(request, f"/repos/{repo.full_name}/git/trees/{sha}"),
            "tree": repo.objects.listing(sha, recursive=recursive), "truncated": False}


def validation_failed(resource: str, message: str, field: str | None = None) -> ApiError:
    error = {"resource": resource, "code": "custom", "message": message}
    if field:
        error["field"] = field
    return ApiError(422, "Validation Failed", errors=[error])


# -- building trees ---------------------------------------------------------------------

def apply_entries(objects: ObjectStore, leaves: dict[str, tuple[str, str]],
                   entries: object) -> None:
    """Change ``leaves`` (path -> (mode, sha)) as the tree entries of a request ask."""
    if not isinstance(entries, list):
        raise ApiError(422, "Invalid request: 'tree' must be a list of entries.")
    for item in entries:
        if not isinstance(item, dict):
            raise ApiError(422, "Invalid request: each tree entry must be an object.")
        path = check_path(item.get("path"))
        mode = item.get("mode")
        if mode not in LEAF_MODES | {TREE_MODE}:
            raise ApiError(422, f"Invalid tree entry mode {mode!r} for {path!r}.")
        kind = "tree" if mode == TREE_MODE else "commit" if mode == SUBMODULE_MODE else "blob"
        if item.get("type", kind) != kind:
            raise ApiError(422, f"Tree entry {path!r} has mode {mode} but type "
                                f"{item.get('type')!r}.")
        for existing in [p for p in leaves if p == path or p.startswith(path + "/")]:
            del leaves[existing]

        if "content" in item:
            if kind != "blob" or not isinstance(item["content"], str):
                raise ApiError(422, f"Tree entry {path!r}: 'content' must be text for a blob.")
            leaves[path] = (mode, objects.put_blob(item["content"].encode()))
            continue
        if "sha" in item and item["sha"] is None:
            continue  # a null sha removes the path
        sha = item.get("sha")
        if kind == "blob" and sha not in objects.blobs:
            raise ApiError(422, f"tree.sha {sha} is not a valid blob")
        if kind == "tree":
            if sha not in objects.trees:
                raise ApiError(422, f"tree.sha {sha} is not a valid tree")
            leaves.update({f"{path}/{sub}": leaf
                           for sub, leaf in objects.flatten(sha).items()})
            continue
        if not isinstance(sha, str):
            raise ApiError(422, f"Tree entry {path!r} needs a 'sha'.")
        leaves[path] = (mode, sha)


def resolve_tree(repo: Repository, name: str) -> str | None:
    """A tree id from a tree id, a commit id or a branch name, as GitHub accepts all three."""
    objects = repo.objects
    if name in objects.trees:
        return name
    if name in objects.commits:
        return objects.commits[name].tree
    head = repo.refs.get(f"refs/heads/{name}")
    return objects.commits[head].tree if head else None
