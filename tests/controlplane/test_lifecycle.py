"""Starting and stopping a control plane of its own, failures and the command line included."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.binaries import ensure_binaries
from controlplane.cluster import ControlPlane, ControlPlaneError

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def binaries() -> Path:
    return ensure_binaries()


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (e.g. a work folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone while we looked
        if text.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_stop_leaves_no_process_port_or_folder_behind(binaries: Path) -> None:
    plane = ControlPlane(binaries=binaries)
    plane.start()
    pids, work_dir = plane.pids, plane.work_dir
    port = int(plane.server_url.rsplit(":", 1)[1])
    assert len(pids) == 2 and plane.is_running() and _port_is_open(port)
    assert plane.startup_seconds is not None and plane.startup_seconds < 30

    plane.stop()
    plane.stop()  # a second stop is harmless

    assert not plane.is_running()
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
    assert not _port_is_open(port)
    assert not work_dir.exists()


def test_failed_start_is_retried_then_reported_with_the_api_server_log(
    binaries: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "bin"
    broken.mkdir()
    for name in ("etcd", "kubectl"):
        (broken / name).symlink_to(binaries / name)
    apiserver = broken / "kube-apiserver"
    apiserver.write_text("#!/bin/sh\necho 'Error: unknown flag: --surprise' >&2\nexit 1\n")
    apiserver.chmod(0o755)
    work_dir = tmp_path / "work"

    with pytest.raises(ControlPlaneError) as failure:
        ControlPlane(binaries=broken, work_dir=work_dir).start()

    message = str(failure.value)
    assert "kube-apiserver exited with 1" in message
    assert "--- attempt 2:" in message  # the retry happened, with its own log section
    assert "Error: unknown flag: --surprise" in message
    assert _processes_mentioning(str(work_dir)) == []  # the etcd of both attempts is gone


def test_command_line_serves_until_sigterm_then_stops_cleanly(tmp_path: Path) -> None:
    folder = tmp_path / "cluster"
    command = [sys.executable, "-m", "controlplane", "up", "--dir", str(folder)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        ready = _read_line(process, timeout=60)
        assert "control plane ready at https://127.0.0.1:" in ready, process.stderr

        env = dict(line.split("=", 1) for line in (folder / "env").read_text().splitlines())
        assert env["KUBECONFIG"] == str(folder / "kubeconfig")
        assert Path(env["FNTC_KUBECTL"]).name == "kubectl"
        found = subprocess.run([env["FNTC_KUBECTL"], "get", "namespace", "default", "-o",
                                "name"], env={**os.environ, **env}, capture_output=True,
                               text=True, timeout=30)
        assert found.stdout.strip() == "namespace/default", found.stderr
        servers = set(_processes_mentioning(str(folder))) - {process.pid}
        assert len(servers) == 2  # etcd and kube-apiserver

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert _processes_mentioning(str(folder)) == []


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """One line of the process's stdout, without hanging the test if none comes."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            pytest.fail(f"no output from the command within {timeout}s")
    return process.stdout.readline()
