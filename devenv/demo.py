"""``python -m devenv.demo``: FNTC end to end on this machine.

Starts a real kube-apiserver and etcd, the FN, Keycloak and GitHub
stand-ins and FNTC's webhook; applies the sample Tasks in ``examples/``;
runs the poller the way its CronJob would until every Task is done; shows
``kubectl get`` and ``kubectl describe`` and the results delivered to
GitHub; then takes everything down. Exits non-zero if any of it went wrong.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from controlplane.binaries import ensure_binaries
from controlplane.cluster import ControlPlane
from standins.sandbox import Sandbox

from .stack import ROOT, LocalStack

EXAMPLES = ROOT / "examples"
#: What each sample should end as.
EXPECTED = {"cancer-summary": "Succeeded", "admissions-digest": "Succeeded",
            "cohort-crash": "Failed"}
NAMESPACE = "research"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def show(result) -> None:
    for stream in (result.stdout, result.stderr):
        if stream.strip():
            print(stream.rstrip(), flush=True)


def main() -> int:
    started = time.monotonic()
    say("Building or reusing kube-apiserver, etcd and kubectl")
    binaries = ensure_binaries()
    work = Path(tempfile.mkdtemp(prefix="fntc-demo-"))
    failures: list[str] = []
    with ControlPlane(binaries=binaries, work_dir=work / "cluster") as plane, \
            Sandbox(work_dir=work) as sandbox:
        print(f"API server {plane.server_url}; stand-ins: FN {sandbox.fn_url}, "
              f"Keycloak {sandbox.keycloak_url}, GitHub {sandbox.github_url}")
        stack = LocalStack(plane, sandbox)
        try:
            say("Installing the Task CRD and FNTC's admission webhook")
            stack.install()
            plane.kubectl("create", "namespace", NAMESPACE)

            say("kubectl apply -f examples/ (the sample Tasks)")
            show(plane.kubectl("apply", "-f", str(EXAMPLES), check=False))
            for refused in sorted((EXAMPLES / "refused").glob("*.yaml")):
                say(f"kubectl apply -f examples/refused/{refused.name} (refused on purpose)")
                result = plane.kubectl("apply", "-f", str(refused), check=False)
                show(result)
                if result.returncode == 0:
                    failures.append(f"{refused.name} was admitted")

            say("kubectl get tasks, right after apply")
            show(plane.kubectl("get", "tasks", "-n", NAMESPACE))

            say("Running the poller as its CronJob would, until every Task is done")
            for run in range(1, 40):
                result = stack.poller()
                print(f"run {run}: " + (result.stderr.strip().splitlines() or ["?"])[-1])
                if result.returncode != 0:
                    show(result)
                    failures.append(f"poller run {run} exited {result.returncode}")
                    break
                tasks = json.loads(plane.kubectl("get", "tasks", "-n", NAMESPACE, "-o",
                                                 "json").stdout)["items"]
                if all(_done(task) for task in tasks):
                    break
                time.sleep(2)

            say("kubectl get tasks -o wide")
            show(plane.kubectl("get", "tasks", "-n", NAMESPACE, "-o", "wide"))
            tasks = json.loads(plane.kubectl("get", "tasks", "-n", NAMESPACE, "-o",
                                             "json").stdout)["items"]
            for task in tasks:
                name = task["metadata"]["name"]
                say(f"kubectl describe task {name}")
                show(plane.kubectl("describe", "task", name, "-n", NAMESPACE))
                failures += _check(task, sandbox)

            say("Results delivered to GitHub (the GitHub stand-in)")
            for task in tasks:
                results = task.get("status", {}).get("results", {})
                if results.get("state") != "Delivered":
                    continue
                files = sandbox.github_state.branch_files(results["repository"],
                                                          results["branch"])
                commits = sandbox.github_state.commits(results["repository"],
                                                       results["branch"])
                print(f"{results['repository']} branch {results['branch']} "
                      f"commit {results['commit'][:12]}: {commits[0].splitlines()[0]}")
                for path in sorted(files):
                    print(f"  {path} ({len(files[path])} bytes)")
        finally:
            stack.stop()
    shutil.rmtree(work, ignore_errors=True)

    say("Summary")
    if failures:
        for failure in failures:
            print(f"FAILED: {failure}")
        return 1
    print(f"Every sample Task ended as expected, in {time.monotonic() - started:.0f}s.")
    return 0


def _done(task: dict) -> bool:
    status = task.get("status") or {}
    if status.get("phase") == "Succeeded":
        return (status.get("results") or {}).get("state") == "Delivered"
    return status.get("phase") in ("Failed", "Cancelled")


def _check(task: dict, sandbox: Sandbox) -> list[str]:
    name = task["metadata"]["name"]
    status = task.get("status") or {}
    problems = []
    if not status.get("taskId"):
        problems.append(f"{name} has no FN task id")
    if status.get("phase") != EXPECTED.get(name):
        problems.append(f"{name} ended {status.get('phase')}, not {EXPECTED.get(name)}")
    if EXPECTED.get(name) == "Succeeded":
        results = status.get("results") or {}
        if results.get("state") != "Delivered" or not results.get("commit"):
            problems.append(f"{name} has no results commit")
        elif not sandbox.github_state.branch_files(results["repository"], results["branch"]):
            problems.append(f"{name}'s results branch is empty")
    return problems


if __name__ == "__main__":
    sys.exit(main())
