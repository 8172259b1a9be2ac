"""``python -m devenv up``: keep a local cluster with FNTC installed running.

Starts what the demo starts (kube-apiserver and etcd, the stand-ins, the
webhook), creates the namespaces ``research`` and ``fntc-system``, writes
``.cache/local/env`` with KUBECONFIG and the FNTC_* settings, prints how to
use it, and keeps everything up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time

from controlplane.binaries import ensure_binaries
from controlplane.cluster import ControlPlane
from standins.sandbox import Sandbox

from .stack import ROOT, LocalStack

LOCAL = ROOT / ".cache" / "local"


def up() -> int:
    binaries = ensure_binaries()
    shutil.rmtree(LOCAL, ignore_errors=True)
    LOCAL.mkdir(parents=True)
    # The handler only flips a flag: anything that takes a lock (Event.set) could
    # deadlock when a second signal lands while the first one's call holds it.
    stop = {"asked": False}
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.update(asked=True))

    with ControlPlane(binaries=binaries, work_dir=LOCAL / "cluster") as plane, \
            Sandbox(work_dir=LOCAL) as sandbox:
        stack = LocalStack(plane, sandbox)
        try:
            stack.install()
            plane.kubectl("create", "namespace", "research")
            plane.kubectl("config", "set-context", "--current", "--namespace=research")
            env_file = LOCAL / "env"
            env_file.write_text("".join(f"export {key}='{value}'\n"
                                        for key, value in stack.env().items())
                                + f'export PATH="{binaries}:$PATH"\n')
            env_file.chmod(0o600)
            (LOCAL / "pid").write_text(f"{os.getpid()}\n")
            print(f"""
FNTC is up: API server {plane.server_url}, webhook {stack.webhook.url},
stand-ins FN {sandbox.fn_url}, Keycloak {sandbox.keycloak_url}, GitHub {sandbox.github_url}.

In another shell, from {ROOT}:
  . .cache/local/env                      # KUBECONFIG, our kubectl on PATH, FNTC_* settings
  kubectl apply -f examples/cancer-summary.yaml
  kubectl get tasks                       # the kubeconfig's namespace is research
  make poll                               # one poller run, as the CronJob does
  kubectl describe task cancer-summary

The webhook's log is {plane.work_dir / 'webhook.log'}. Ctrl-C here stops everything.
""", flush=True)
            while not stop["asked"]:
                time.sleep(0.2)
            print("stopping: webhook, stand-ins, kube-apiserver and etcd", flush=True)
        finally:
            stack.stop()
            (LOCAL / "pid").unlink(missing_ok=True)
    print("stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devenv",
        description="FNTC on a local control plane against the stand-ins.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start everything and keep it up until Ctrl-C")
    commands.add_parser("demo", help="the end-to-end demo (what `make demo` runs)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo
        return demo()
    return up()


if __name__ == "__main__":
    sys.exit(main())
