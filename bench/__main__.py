"""``python -m bench``: admission latency, poller run time and memory, each next to
a baseline measured in the same run on the same control plane.

- admission: creating a Task through the webhook (which calls Keycloak and the
  FN) against creating a ConfigMap of the same size, which no webhook sees.
- poller: one run over N fresh Tasks, and the rerun over the same unchanged
  Tasks, against a bare paginated list of those Tasks.
- memory: peak RSS of a poller run over N Tasks against a process that only
  imports the same libraries and lists the Tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubernetes import client

from controlplane.binaries import ensure_binaries
from controlplane.cluster import ControlPlane
from devenv.stack import ROOT, LocalStack
from standins.clock import ManualClock
from standins.sandbox import Sandbox
from taskcore.kube import TaskStore
from taskcore.task import GROUP, PLURAL, VERSION


def task_body(name: str) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Task", "metadata": {"name": name},
            "spec": {"image": "ghcr.io/fntc-sandbox/analytics:1.0",
                     "user": {"email": "alice@example.org"}, "project": "project1",
                     "dataset": 1, "repository": "fntc-sandbox/cancer-study"}}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def row(name: str, values: list[float], unit: str = "ms", scale: float = 1000) -> str:
    return (f"{name:44} n={len(values):4}  p50={percentile(values, 0.5) * scale:8.1f}{unit}  "
            f"p95={percentile(values, 0.95) * scale:8.1f}{unit}  "
            f"max={max(values) * scale:8.1f}{unit}")


def bench_admission(api: client.ApiClient, namespace: str, count: int) -> None:
    objects = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    with_webhook, baseline = [], []
    for index in range(count):
        started = time.perf_counter()
        core.create_namespaced_config_map(namespace, {
            "metadata": {"name": f"baseline-{index}"},
            "data": {"spec": json.dumps(task_body("x")["spec"])}})
        baseline.append(time.perf_counter() - started)
        started = time.perf_counter()
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                task_body(f"admit-{index}"))
        with_webhook.append(time.perf_counter() - started)
    print(row("baseline: create ConfigMap (no webhook)", baseline))
    print(row("create Task (webhook: Keycloak + FN submit)", with_webhook))
    overhead = statistics.median(with_webhook) - statistics.median(baseline)
    print(f"{'webhook overhead at p50':44} {overhead * 1000:.1f} ms "
          f"(budget: 15 s webhook timeout)")


def create_tasks(stack: LocalStack, namespace: str, count: int) -> None:
    """Tasks straight into the API server with the webhook's work already done for
    them would hide the FN calls; create them through the webhook instead."""
    objects = client.CustomObjectsApi(stack.plane.api_client())
    for index in range(count):
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                task_body(f"load-{index}"))


def peak_rss_of(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of a child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"{command} exited with status {status}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


LIST_ONLY = """
import sys
from taskcore.kube import TaskStore, load_api_client
import poller.__main__, webhook.app  # the same imports as a poller run
print(sum(1 for _ in TaskStore(load_api_client()).iterate((sys.argv[1],))))
"""


def bench_poller(stack: LocalStack, namespace: str, count: int) -> None:
    env = {**os.environ, **stack.env(), "FNTC_NAMESPACES": namespace, "PYTHONPATH": str(ROOT)}
    store = TaskStore(stack.plane.api_client())
    listing = []
    for _ in range(5):
        started = time.perf_counter()
        seen = sum(1 for _ in store.iterate((namespace,)))
        listing.append(time.perf_counter() - started)
    assert seen == count, (seen, count)
    print(row(f"baseline: list {count} Tasks (in-process)", listing))

    stack.sandbox.clock.advance(60)     # every FN task has finished by now
    first_seconds, first_rss = peak_rss_of([sys.executable, "-m", "poller"], env)
    rerun_seconds, rerun_rss = peak_rss_of([sys.executable, "-m", "poller"], env)
    base_seconds, base_rss = peak_rss_of([sys.executable, "-c", LIST_ONLY, namespace], env)
    print(f"{'baseline process: import + list':44} {base_seconds:6.2f} s  peak RSS "
          f"{base_rss:6.1f} MiB")
    print(f"{'poller run: refresh + deliver ' + str(count):44} {first_seconds:6.2f} s  "
          f"peak RSS {first_rss:6.1f} MiB")
    print(f"{'poller rerun over unchanged Tasks':44} {rerun_seconds:6.2f} s  peak RSS "
          f"{rerun_rss:6.1f} MiB")
    print(f"{'poller memory over baseline':44} {first_rss - base_rss:+.1f} MiB for "
          f"{count} Tasks")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--admissions", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args()

    binaries = ensure_binaries()
    with tempfile.TemporaryDirectory(prefix="fntc-bench-") as work, \
            ControlPlane(binaries=binaries, work_dir=Path(work) / "cluster") as plane, \
            Sandbox(clock=ManualClock(), work_dir=Path(work)) as sandbox:
        stack = LocalStack(plane, sandbox)
        try:
            stack.install()
            print(f"# admission latency through the real API server "
                  f"({args.admissions} of each)")
            plane.create_namespace("bench-admission")
            bench_admission(plane.api_client(), "bench-admission", args.admissions)
            print(f"\n# poller over {args.tasks} Tasks")
            plane.create_namespace("bench-poller")
            create_tasks(stack, "bench-poller", args.tasks)
            bench_poller(stack, "bench-poller", args.tasks)
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
