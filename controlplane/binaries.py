"""Finding, and building when needed, etcd, kube-apiserver and kubectl.

The binaries come from ``scripts/build-control-plane.sh``, which compiles
pinned releases from the Go module proxy into a cache folder keyed by
version and skips whatever is already there. A first build takes minutes,
so its progress is passed on as it happens rather than after the fact.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import TextIO

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-control-plane.sh"
BINARY_NAMES = ("etcd", "kube-apiserver", "kubectl")

#: How many lines of a failed build's output the error carries.
FAILURE_TAIL_LINES = 30


class BinariesUnavailable(RuntimeError):
    """The control-plane binaries could not be built or found."""


def ensure_binaries(*, progress: TextIO | None = None) -> Path:
    """Build the binaries if they are missing and return the folder holding them.

    The build script's progress lines go to ``progress`` (stderr by default)
    as they arrive. Concurrent callers (parallel test workers, a demo next
    to a test run) take turns through a lock file, so only one of them
    builds and the others find the result.
    """
    progress = progress or sys.stderr
    lock_path = _cache_dir() / "bin" / ".build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        folder = _run_build_script(progress)

    missing = [name for name in BINARY_NAMES if not os.access(folder / name, os.X_OK)]
    if missing:
        raise BinariesUnavailable(
            f"{BUILD_SCRIPT.name} finished but {', '.join(missing)} is missing from "
            f"{folder}; delete that folder and run `python -m controlplane build` again."
        )
    return folder


def _run_build_script(progress: TextIO) -> Path:
    tail: deque[str] = deque(maxlen=FAILURE_TAIL_LINES)
    try:
        process = subprocess.Popen(
            ["bash", str(BUILD_SCRIPT)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        )
    except OSError as e:
        raise BinariesUnavailable(f"cannot run {BUILD_SCRIPT}: {e}") from e

    # The script prints progress (and Go's errors) on stderr and only the
    # folder on stdout, so reading stderr to its end cannot block on stdout.
    assert process.stderr is not None and process.stdout is not None
    for line in process.stderr:
        tail.append(line)
        progress.write(line)
        progress.flush()
    folder = process.stdout.read().strip().splitlines()
    if process.wait() != 0 or not folder:
        raise BinariesUnavailable(
            f"building the control plane failed (exit {process.returncode}); it needs Go "
            "and the Go module proxy. Last lines of the build:\n" + "".join(tail)
        )
    return Path(folder[-1])


def _cache_dir() -> Path:
    # Same rule as the build script, so the lock sits next to what it guards.
    return Path(os.environ.get("FNTC_CACHE_DIR") or REPO_ROOT / ".cache")
