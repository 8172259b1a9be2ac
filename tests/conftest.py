"""Fixtures shared by the test suite.

Integration tests stand on one local stack per session: a real
kube-apiserver and etcd, the stand-ins on a manual clock, and FNTC's webhook
process registered with the API server. Each test gets its own namespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.cluster import ControlPlane
from devenv.stack import LocalStack
from poller.__main__ import run_once
from poller.run import Summary
from standins.clock import ManualClock
from standins.sandbox import Sandbox

pytest_plugins = ["controlplane.pytest_plugin"]


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(clock=ManualClock(), work_dir=tmp_path_factory.mktemp("sandbox")) as running:
        yield running


@pytest.fixture(scope="session")
def stack(control_plane: ControlPlane, sandbox: Sandbox) -> Iterator[LocalStack]:
    local = LocalStack(control_plane, sandbox, settings={"FNTC_ORPHAN_GRACE": "0",
                                                         "FNTC_SUBMIT_BACKOFF_BASE": "0"})
    local.install()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(autouse=True)
def _clean_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    """Faults and switches a test sets on the stand-ins never leak into the next test."""
    yield
    if "sandbox" in request.fixturenames or "stack" in request.fixturenames:
        running = request.getfixturevalue("sandbox")
        running.fn_faults.clear()
        running.keycloak_faults.clear()
        running.github_state.faults.clear()
        running.fn_state.review_enabled = False


class PollerRunner:
    """Runs the poller's entry point in this process, as the CronJob would run it."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack

    def __call__(self, **settings: str) -> Summary:
        code, summary = run_once({**self.stack.env(), **settings})
        assert code == 0 and summary is not None, f"poller run failed with exit code {code}"
        return summary


@pytest.fixture
def run_poller(stack: LocalStack) -> PollerRunner:
    return PollerRunner(stack)


def task_manifest(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A Task for alice's cancer-registry study, with ``spec`` overriding fields."""
    body: dict[str, Any] = {
        "image": "ghcr.io/fntc-sandbox/analytics:1.0",
        "user": {"email": "alice@example.org"},
        "project": "project1",
        "dataset": 1,
        "repository": "fntc-sandbox/cancer-study",
        "branch": "main",
    }
    body.update(spec)
    return {"apiVersion": "tasks.federatednode.com/v1", "kind": "Task",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}
