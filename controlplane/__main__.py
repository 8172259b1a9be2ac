"""Command line: ``python -m controlplane up --dir DIR`` or ``python -m controlplane build``.

``up`` runs a control plane until SIGINT or SIGTERM, for the demo and for
poking at by hand; ``build`` only makes sure the binaries exist, so a slow
first build can happen before anything waits on it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from controlplane.binaries import BinariesUnavailable, ensure_binaries
from controlplane.cluster import ControlPlane, ControlPlaneError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controlplane")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run etcd and kube-apiserver until interrupted")
    up.add_argument("--dir", type=Path, required=True,
                    help="folder for the kubeconfig, the env file, logs and etcd data")
    commands.add_parser("build", help="build the binaries if missing and print their folder")
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            print(ensure_binaries())
            return 0
        return _run_until_signalled(args.dir.resolve())
    except (BinariesUnavailable, ControlPlaneError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run_until_signalled(folder: Path) -> int:
    # Handlers go in first: a signal during the start-up must still lead to
    # a clean stop rather than to orphaned servers.
    # The handler only flips a flag: Event.set takes a lock, and a second signal
    # arriving inside the first one's call would deadlock on it.
    stopping = {"asked": False}

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping["asked"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    with ControlPlane(work_dir=folder) as control_plane:
        env_file = folder / "env"
        env_file.write_text("".join(
            f"{name}={value}\n" for name, value in control_plane.client_environment().items()))
        print(f"control plane ready at {control_plane.server_url} in "
              f"{control_plane.startup_seconds:.1f}s; kubeconfig {control_plane.kubeconfig}, "
              f"env {env_file}, logs {folder / 'logs'}", flush=True)

        while not stopping["asked"]:
            time.sleep(0.2)
            if not control_plane.is_running():
                print(f"error: a control-plane server exited; see {folder / 'logs'}",
                      file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
