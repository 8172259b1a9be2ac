"""The FN client maps every answer the FN gives to the right error class."""

from __future__ import annotations

import json

import httpx
import pytest

from taskcore.fn import (MAX_PAGES, FNAuthFailed, FNClient, FNRejected, FNUnavailable,
                         ResultsNotReleased, task_body)
from taskcore.task import Marker, review_spec


def client_answering(status: int, body, *, content_type: str = "application/json",
                     seen: list | None = None) -> FNClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if isinstance(body, (bytes, str)):
            return httpx.Response(status, content=body, headers={"content-type": content_type})
        return httpx.Response(status, json=body)
    return FNClient("http://fn.test", transport=httpx.MockTransport(handler))


SPEC = review_spec("study", {"image": "ghcr.io/org/img:1.0", "user": {"email": "a@b.org"},
                             "project": "p1", "dataset": "registry",
                             "repository": "org/repo"}).spec
MARKER = Marker("local", "ns", "study", "uid-1")


def test_create_sends_token_project_and_body_and_returns_the_id():
    seen: list[httpx.Request] = []
    fn = client_answering(201, {"task_id": 12}, seen=seen)
    assert fn.create("refresh-token", "p1", task_body(SPEC, name="study", marker=MARKER)) == 12
    request = seen[0]
    assert request.headers["authorization"] == "Bearer refresh-token"
    assert request.headers["project-name"] == "p1"
    body = json.loads(request.content)
    assert body["description"] == str(MARKER)
    assert body["tags"] == {"dataset_name": "registry"}
    assert body["executors"] == [{"image": "ghcr.io/org/img:1.0"}]
    assert body["task_controller"] is True


@pytest.mark.parametrize(("status", "body", "error"), [
    (400, {"error": "User does not belong to a valid project"}, FNRejected),
    (404, {"error": "Dataset 9 does not exist"}, FNRejected),
    (500, {"error": "Image ghcr.io/org/img:1.0 could not be found"}, FNRejected),
    (500, {"error": "Internal Error"}, FNUnavailable),
    (502, "<html>bad gateway</html>", FNUnavailable),
    (503, {"error": "down"}, FNUnavailable),
    (401, {"error": "Failed to login"}, FNAuthFailed),
    (403, {"error": "forbidden"}, FNAuthFailed),
], ids=["project", "dataset", "image-500-is-a-refusal", "internal-error", "html-502", "503",
        "401", "403"])
def test_failures_are_classified(status, body, error):
    with pytest.raises(error) as raised:
        client_answering(status, body).validate("t", "p1", {})
    assert raised.value.transient is (error is FNUnavailable)


def test_refusal_message_is_the_fns_own_words():
    with pytest.raises(FNRejected, match="^Dataset 9 does not exist$"):
        client_answering(404, {"error": "Dataset 9 does not exist"}).validate("t", "p1", {})


def test_a_huge_error_body_is_trimmed():
    with pytest.raises(FNRejected) as raised:
        client_answering(400, {"error": "x" * 100_000}).validate("t", "p1", {})
    assert len(str(raised.value)) < 400


def test_unreachable_fn_is_transient():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)
    fn = FNClient("http://fn.test", transport=httpx.MockTransport(refuse))
    with pytest.raises(FNUnavailable, match="could not be reached"):
        fn.get("t", 3)


@pytest.mark.parametrize(("review", "blocked"), [("Pending Review", False),
                                                  ("Blocked Release", True)])
def test_results_under_review(review, blocked):
    with pytest.raises(ResultsNotReleased) as raised:
        client_answering(400, {"status": review}).results("t", 3)
    assert raised.value.blocked is blocked
    assert raised.value.transient is not blocked


def test_results_are_returned_as_bytes():
    assert client_answering(200, b"PK\x05\x06" + b"\0" * 18,
                            content_type="application/zip").results("t", 3).startswith(b"PK")


def test_find_follows_pages():
    pages = {1: {"items": [{"id": 1}, {"id": 2}], "page": 1, "pages": 2},
             2: {"items": [{"id": 3}], "page": 2, "pages": 2}}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["description__eq"] == "m"
        return httpx.Response(200, json=pages[int(request.url.params["page"])])
    fn = FNClient("http://fn.test", transport=httpx.MockTransport(handler))
    assert [item["id"] for item in fn.find("admin", description__eq="m")] == [1, 2, 3]


def test_create_without_a_task_id_is_not_taken_as_success():
    with pytest.raises(FNUnavailable, match="no task_id"):
        client_answering(201, {"id": 4}).create("t", "p1", {})


def test_find_stops_at_a_page_cap_when_the_fn_claims_endless_pages():
    asked: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(int(request.url.params["page"]))
        return httpx.Response(200, json={"items": [{"id": len(asked)}], "pages": 10**9})
    fn = FNClient("http://fn.test", transport=httpx.MockTransport(handler))
    assert len(fn.find("admin")) == MAX_PAGES
    assert asked == list(range(1, MAX_PAGES + 1))
