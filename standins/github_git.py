"""Git objects as the GitHub stand-in stores them: blobs, trees and commits.

Object ids are computed the way git computes them (SHA-1 over a typed header
and the object's bytes), so a blob uploaded twice gets the same id, a tree
built from the same files matches what ``git`` would produce, and the product
cannot rely on ids that only this stand-in would hand out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

#: Tree entry modes as the GitHub API spells them.
FILE_MODE = "100644"
EXECUTABLE_MODE = "100755"
SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"
TREE_MODE = "040000"
LEAF_MODES = {FILE_MODE, EXECUTABLE_MODE, SYMLINK_MODE, SUBMODULE_MODE}


class GitObjectError(ValueError):
    """A request would build an object git itself would refuse."""


@dataclass(frozen=True)
class TreeEntry:
    name: str
    mode: str
    sha: str

    @property
    def type(self) -> str:
        if self.mode == TREE_MODE:
            return "tree"
        return "commit" if self.mode == SUBMODULE_MODE else "blob"


@dataclass(frozen=True)
class Signature:
    name: str
    email: str
    date: datetime

    def as_git(self) -> str:
        return f"{self.name} <{self.email}> {int(self.date.timestamp())} +0000"


@dataclass(frozen=True)
class Commit:
    sha: str
    tree: str
    parents: tuple[str, ...]
    message: str
    author: Signature
    committer: Signature


def object_id(kind: str, payload: bytes) -> str:
    """The id git gives an object: SHA-1 of ``"<kind> <size>\\0"`` plus the payload."""
    header = f"{kind} {len(payload)}\0".encode()
    return hashlib.sha1(header + payload).hexdigest()


def _tree_sort_key(entry: TreeEntry) -> bytes:
    # Git orders a subtree as if its name ended in "/", so "a.txt" sorts before "a/".
    suffix = "/" if entry.mode == TREE_MODE else ""
    return (entry.name + suffix).encode()


class ObjectStore:
    """The objects of one repository, keyed by id. Not thread-safe on its own."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.trees: dict[str, tuple[TreeEntry, ...]] = {}
        self.commits: dict[str, Commit] = {}

    def put_blob(self, data: bytes) -> str:
        sha = object_id("blob", data)
        self.blobs[sha] = data
        return sha

    def put_tree(self, entries: list[TreeEntry]) -> str:
        ordered = tuple(sorted(entries, key=_tree_sort_key))
        payload = b"".join(
            f"{entry.mode.lstrip('0')} {entry.name}\0".encode() + bytes.fromhex(entry.sha)
            for entry in ordered
        )
        sha = object_id("tree", payload)
        self.trees[sha] = ordered
        return sha

    def put_commit(self, *, tree: str, parents: list[str], message: str,
                   author: Signature, committer: Signature) -> Commit:
        if tree not in self.trees:
            raise GitObjectError(f"tree {tree} does not exist")
        for parent in parents:
            if parent not in self.commits:
                raise GitObjectError(f"parent {parent} does not exist")
        lines = [f"tree {tree}"] + [f"parent {parent}" for parent in parents]
        lines += [f"author {author.as_git()}", f"committer {committer.as_git()}"]
        payload = ("\n".join(lines) + "\n\n" + message).encode()
        commit = Commit(object_id("commit", payload), tree, tuple(parents), message,
                        author, committer)
        self.commits[commit.sha] = commit
        return commit

    def flatten(self, tree_sha: str, prefix: str = "") -> dict[str, tuple[str, str]]:
        """Every leaf under a tree as ``{path: (mode, sha)}``."""
        leaves: dict[str, tuple[str, str]] = {}
        for entry in self.trees[tree_sha]:
            path = prefix + entry.name
            if entry.mode == TREE_MODE:
                leaves.update(self.flatten(entry.sha, path + "/"))
            else:
                leaves[path] = (entry.mode, entry.sha)
        return leaves

    def build_tree(self, leaves: dict[str, tuple[str, str]]) -> str:
        """Store nested trees for ``{path: (mode, sha)}`` and return the root's id."""
        here: list[TreeEntry] = []
        below: dict[str, dict[str, tuple[str, str]]] = {}
        for path, (mode, sha) in leaves.items():
            head, _, rest = path.partition("/")
            if rest:
                below.setdefault(head, {})[rest] = (mode, sha)
            else:
                here.append(TreeEntry(head, mode, sha))
        clashes = {entry.name for entry in here} & below.keys()
        if clashes:
            raise GitObjectError(f"{sorted(clashes)[0]!r} is both a file and a folder")
        here += [TreeEntry(name, TREE_MODE, self.build_tree(sub)) for name, sub in below.items()]
        return self.put_tree(here)

    def listing(self, tree_sha: str, *, recursive: bool) -> list[dict]:
        """A tree's entries as the API lists them, subtrees included when recursive."""
        found: list[dict] = []
        self._list_into(found, tree_sha, "", recursive)
        return found

    def _list_into(self, found: list[dict], tree_sha: str, prefix: str,
                   recursive: bool) -> None:
        for entry in self.trees[tree_sha]:
            item = {"path": prefix + entry.name, "mode": entry.mode, "type": entry.type,
                    "sha": entry.sha}
            if entry.type == "blob":
                item["size"] = len(self.blobs.get(entry.sha, b""))
            found.append(item)
            if recursive and entry.mode == TREE_MODE:
                self._list_into(found, entry.sha, item["path"] + "/", recursive)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True when ``ancestor`` is ``descendant`` or reachable from it."""
        seen: set[str] = set()
        pending = [descendant]
        while pending:
            sha = pending.pop()
            if sha == ancestor:
                return True
            if sha in seen or sha not in self.commits:
                continue
            seen.add(sha)
            pending.extend(self.commits[sha].parents)
        return False

    def first_parent_history(self, sha: str) -> list[Commit]:
        """Commits from ``sha`` back along first parents, newest first."""
        history: list[Commit] = []
        current: str | None = sha
        while current is not None:
            commit = self.commits[current]
            history.append(commit)
            current = commit.parents[0] if commit.parents else None
        return history
