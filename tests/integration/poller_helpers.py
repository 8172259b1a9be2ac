"""Helpers the ``test_poller_*`` files share: one poller run over a test's namespace,
Tasks created and read through the API server, their Events and conditions, the FN
tasks made for them, and ways to meet trouble (a killed run, a deferred Task).

A module of its own rather than conftest.py, so each test file says what it uses.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

import pytest
from kubernetes import client

from poller.__main__ import build, run_once, wall_clock
from poller.run import Poller, Summary
from taskcore.fn import FNClient, task_body
from taskcore.keycloak import Keycloak
from taskcore.settings import Settings
from taskcore.task import GROUP, PLURAL, VERSION, review_spec
from tests.conftest import task_manifest

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def poller_env(stack, namespace: str, **settings: str) -> dict[str, str]:
    """The stack's settings, watching this test's namespace only."""
    return {**stack.env(), "FNTC_NAMESPACES": namespace, **settings}


@pytest.fixture
def poll(stack, namespace) -> Callable[..., Summary]:
    """One run of the poller's entry point over this test's namespace.

    The run reads the wall clock, as Keycloak and GitHub do when they judge its
    tokens; a test that needs the poller's time to move hands in ``now``.
    """
    def run(now: Callable | None = None, **settings: str) -> Summary:
        code, summary = run_once(poller_env(stack, namespace, **settings),
                                 now=now or wall_clock)
        assert code == 0 and summary is not None, f"poller run failed with exit code {code}"
        return summary
    return run


def make_poller(stack, kube_api, namespace: str, now: Callable = wall_clock,
                **settings: str) -> Poller:
    """A poller whose parts a test may wrap; run it with ``.run()`` (no Lease)."""
    return build(Settings.from_env(poller_env(stack, namespace, **settings)), kube_api,
                 now=now)


def create(kube_api, namespace: str, name: str, **spec: Any) -> None:
    client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, task_manifest(name, namespace, **spec))


def read(kube_api, namespace: str, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)


def wait_for_first_status(kube_api, namespace: str, names: list[str]) -> None:
    """The webhook writes a Task's first status, then its Event, just after the
    Task is stored; a poller run starting earlier would race with it."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if all(read(kube_api, namespace, name).get("status") and
               events(kube_api, namespace, name) for name in names):
            return
        time.sleep(0.05)
    raise AssertionError("the webhook did not write the first status and Event")


def events(kube_api, namespace: str, name: str) -> list[tuple[str, str]]:
    """(reason, type) of the Task's Events in the order the API server lists them."""
    listed = client.CoreV1Api(kube_api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}").items
    return [(event.reason, event.type) for event in listed]


def condition(task: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in task["status"]["conditions"] if c["type"] == kind)


def fn_task(sandbox, task: dict[str, Any]):
    return sandbox.fn_state.tasks[task["status"]["taskId"]]


def submissions_for(sandbox, namespace: str, name: str) -> list:
    """FN tasks created for one Task, found by the marker in their description."""
    return [task for task in sandbox.fn_state.submissions
            if f"namespace={namespace} task={name} " in (task.description or "")]


def cancel_on_fn(stack, task_id: int) -> None:
    """Cancel as the researcher would, through the FN's API with her own token."""
    settings = Settings.from_env(stack.env())
    keycloak = Keycloak.from_settings(settings)
    fn = FNClient(settings.fn_url)
    try:
        token = keycloak.fn_token_for(keycloak.find_user(email="alice@example.org"))
        fn.cancel(token, task_id)
    finally:
        keycloak.close()
        fn.close()


class Killed(BaseException):
    """The process died here."""


def create_deferred(sandbox, kube_api, namespace: str, name: str) -> None:
    """A Task admitted while the FN could not validate it: Pending, no FN task yet."""
    sandbox.fn_faults.add("POST", "/tasks/validate", 503, body={"error": "down"})
    create(kube_api, namespace, name)
    wait_for_first_status(kube_api, namespace, [name])
    assert read(kube_api, namespace, name)["status"]["phase"] == "Pending"


def wrap_status_writes(poller, before_write) -> None:
    """Call ``before_write(task, patch)`` ahead of every status write of ``poller``."""
    real = poller.tasks.patch_status

    def patch_status(task: dict[str, Any], patch: dict[str, Any], **kwargs: Any):
        before_write(task, patch)
        return real(task, patch, **kwargs)
    poller.tasks.patch_status = patch_status


def fn_task_behind_fntc(sandbox, marker, *, name: str | None = None) -> int:
    """An FN task made for ``marker`` as alice, through the FN's API, without FNTC."""
    settings = Settings.from_env(sandbox.env())
    keycloak = Keycloak.from_settings(settings)
    fn = FNClient(settings.fn_url)
    try:
        task_name = name or marker.name
        spec = review_spec(task_name, task_manifest(task_name, marker.namespace)["spec"]).spec
        assert spec is not None
        token = keycloak.fn_token_for(keycloak.find_user(email="alice@example.org"))
        return fn.create(token, "project1", task_body(spec, name=task_name, marker=marker))
    finally:
        keycloak.close()
        fn.close()
