"""ensure_binaries drives the real build script; a stand-in `go` keeps it fast and offline."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from controlplane.binaries import BINARY_NAMES, BinariesUnavailable, ensure_binaries

#: Writes an empty executable wherever `go build -o` points, like a successful build.
SUCCEEDING_GO = """#!/bin/sh
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then shift; out=$1; fi
  shift
done
printf '#!/bin/sh\\n' > "$out" && chmod +x "$out"
"""

FAILING_GO = """#!/bin/sh
echo "go: k8s.io/kubernetes@v1.36.3: module lookup disabled" >&2
exit 1
"""


@pytest.fixture
def fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only what the build script (and our `go`) needs, plus that `go`."""
    bin_dir = tmp_path / "path"
    bin_dir.mkdir()
    for tool in ("bash", "awk", "dirname", "mkdir", "mv", "chmod"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed by the build script"
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FNTC_CACHE_DIR", str(tmp_path / "cache"))
    return bin_dir / "go"


def test_builds_missing_binaries_and_passes_progress_on(fake_go: Path, tmp_path: Path) -> None:
    fake_go.write_text(SUCCEEDING_GO)
    fake_go.chmod(0o755)
    progress = io.StringIO()

    folder = ensure_binaries(progress=progress)

    assert folder.parent == tmp_path / "cache" / "bin"
    assert sorted(p.name for p in folder.iterdir()) == sorted(BINARY_NAMES)
    assert "building kube-apiserver" in progress.getvalue()
    assert "built kubectl" in progress.getvalue()

    again = io.StringIO()
    assert ensure_binaries(progress=again) == folder
    assert again.getvalue() == ""  # nothing left to build


def test_failed_build_says_what_is_needed_and_shows_go_output(fake_go: Path) -> None:
    fake_go.write_text(FAILING_GO)
    fake_go.chmod(0o755)

    with pytest.raises(BinariesUnavailable) as failure:
        ensure_binaries(progress=io.StringIO())

    message = str(failure.value)
    assert "needs Go and the Go module proxy" in message
    assert "module lookup disabled" in message
