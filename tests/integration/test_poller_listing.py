"""Listing many Tasks page by page, and starting again when a continue token expires.

Three hundred Tasks go through the webhook like any other; the FN's task list
fails fast while they are admitted, so each is admitted as deferred (Pending)
without an FN task, which keeps the setup quick and the FN untouched.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from poller.reconcile import Step
from taskcore.kube import KubeError, TaskStore
from taskcore.task import GROUP, PLURAL, VERSION
from tests.conftest import task_manifest
from tests.integration.poller_helpers import make_poller

COUNT = 300
PAGE = 25


@pytest.fixture(scope="module")
def crowd(stack, sandbox, control_plane, kube_api) -> Iterator[str]:
    """A namespace holding COUNT Pending Tasks, each with its first status written."""
    namespace = control_plane.create_namespace(f"crowd-{uuid.uuid4().hex[:8]}")
    objects = client.CustomObjectsApi(kube_api)
    sandbox.fn_faults.add("GET", "/tasks", 503, body={"error": "down"}, times=COUNT * 2)
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda index: objects.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, task_manifest(f"t{index:03}", namespace)),
                range(COUNT)))
    finally:
        sandbox.fn_faults.clear()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        if len(items) == COUNT and all(item.get("status") for item in items):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the Tasks did not all get their first status")
    yield namespace


def count_pages(store: TaskStore, *, expire_at: set[int] = frozenset()) -> list[list[str]]:
    """Record the names on every page ``store`` fetches; the continuations among
    the calls numbered in ``expire_at`` fail with 410 Gone, as an expired token does."""
    pages: list[list[str]] = []
    real = store._list
    calls = iter(range(1, 1000))

    def listing(namespace: str | None, limit: int, token: str | None) -> dict[str, Any]:
        if next(calls) in expire_at and token:
            pages.append([])
            raise ApiException(status=410, reason="Gone: the continue token has expired")
        page = real(namespace, limit, token)
        pages.append([item["metadata"]["name"] for item in page["items"]])
        return page
    store._list = listing
    return pages


def test_every_task_is_listed_once_across_pages(crowd, kube_api):
    store = TaskStore(kube_api)
    pages = count_pages(store)
    names = [task["metadata"]["name"] for task in store.iterate((crowd,), page_size=PAGE)]
    assert len(pages) == COUNT // PAGE
    assert all(len(page) == PAGE for page in pages)
    assert sorted(names) == sorted(f"t{index:03}" for index in range(COUNT))

    # Across all namespaces (the default), with this namespace among the others.
    everywhere = [(task["metadata"]["namespace"], task["metadata"]["name"])
                  for task in TaskStore(kube_api).iterate(page_size=PAGE)]
    assert len(everywhere) == len(set(everywhere))
    assert sum(namespace == crowd for namespace, _ in everywhere) == COUNT


def test_an_expired_continue_token_restarts_the_list(crowd, kube_api):
    store = TaskStore(kube_api)
    pages = count_pages(store, expire_at={4})
    names = [task["metadata"]["name"] for task in store.iterate((crowd,), page_size=PAGE)]
    # Three pages, the expired fourth, then the whole list again from the start.
    assert [len(page) for page in pages[:4]] == [PAGE, PAGE, PAGE, 0]
    assert len(pages) == 4 + COUNT // PAGE
    assert len(names) == COUNT == len(set(names))
    assert Counter(name for page in pages for name in page).most_common(1)[0][1] == 2


def test_a_list_that_keeps_expiring_fails_the_run(crowd, kube_api):
    store = TaskStore(kube_api)
    count_pages(store, expire_at=set(range(2, 1000)))
    with pytest.raises(KubeError, match="listing Tasks"):
        list(store.iterate((crowd,), page_size=PAGE))


def test_a_run_reconciles_each_task_once(crowd, stack, sandbox, kube_api):
    poller = make_poller(stack, kube_api, crowd)
    poller.page_size = PAGE
    pages = count_pages(poller.tasks, expire_at={6})
    reconciled: Counter[str] = Counter()

    def reconcile(task: dict[str, Any]) -> Step:
        reconciled[task["metadata"]["name"]] += 1
        return Step(dict(task["status"]))
    poller.reconciler.reconcile = reconcile
    poller.reconciler.submission_due = lambda task: False

    summary = poller.run()
    assert (summary.seen, summary.changed, summary.errors) == (COUNT, 0, 0)
    assert len(reconciled) == COUNT and set(reconciled.values()) == {1}
    assert len(pages) == 6 + COUNT // PAGE
