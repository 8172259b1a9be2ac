"""The webhook's HTTP surface, in process: input checks, answers, health, metrics, TLS.

Reviews go through FastAPI's test client; the decisions come from a scripted
stand-in for :class:`Admission` or from the real one acting against the
sandbox's stand-ins. TLS is served by uvicorn exactly as ``python -m webhook``
serves it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import urllib3
import uvicorn
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from controlplane import pki
from standins.sandbox import Sandbox
from taskcore.fn import FNClient
from taskcore.keycloak import Keycloak
from taskcore.settings import Settings
from taskcore.submission import Submitter
from webhook.admission import Admission
from webhook.app import MAX_BODY_BYTES, create_app, create_probe_app
from webhook.metrics import REGISTRY
from webhook.review import API_VERSION, AdmissionRequest, AdmissionResponse, allowed, denied
from webhook.tls import ReloadingContext

UID = "3d1c8f0e-7a51-4a8e-9d2b-5b1f2c0d9e11"
TASK_ID = "tasks.federatednode.com/task-id"
ADMISSION_UID = "tasks.federatednode.com/admission-uid"
SUBMISSION = "tasks.federatednode.com/submission"


def review_body(operation: str = "CREATE", *, uid: str = UID, obj: dict | None = None,
                **request: Any) -> dict[str, Any]:
    body = {"uid": uid, "operation": operation, "namespace": "research", "name": "summary",
            "userInfo": {"username": "alice", "groups": ["researchers"]},
            "object": obj if obj is not None else {"metadata": {"name": "summary"}}}
    body.update(request)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": body}


def task_object(name: str = "summary", annotations: dict[str, str] | None = None,
                **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "research"}
    if annotations is not None:
        metadata["annotations"] = annotations
    body = {"image": "ghcr.io/fntc-sandbox/analytics:1.0", "user": {"email": "alice@example.org"},
            "project": "project1", "dataset": 1, "repository": "fntc-sandbox/cancer-study"}
    body.update(spec)
    return {"apiVersion": "tasks.federatednode.com/v1", "kind": "Task", "metadata": metadata,
            "spec": body}


def decoded_patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response.get("patchType") == "JSONPatch", response
    return json.loads(base64.b64decode(response["patch"]))


class ScriptedAdmission:
    """Answers every review with ``decide(request)``; records what it saw."""

    def __init__(self, decide: Callable[[AdmissionRequest], AdmissionResponse]) -> None:
        self.decide = decide
        self.seen: list[AdmissionRequest] = []

    def review(self, request: AdmissionRequest) -> AdmissionResponse:
        self.seen.append(request)
        return self.decide(request)


class NoTasks:
    """The Kubernetes side for in-process reviews: no Task of that name exists yet."""

    def get(self, namespace: str, name: str) -> dict | None:
        return None


def scripted_client(decide: Callable[[AdmissionRequest], AdmissionResponse]
                    ) -> tuple[TestClient, ScriptedAdmission]:
    admission = ScriptedAdmission(decide)
    return TestClient(create_app(lambda: admission)), admission  # type: ignore[arg-type]


def admissions_counted(operation: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("fntc_admissions_total",
                                     {"operation": operation, "outcome": outcome}) or 0.0


# -- input checks ------------------------------------------------------------------------


@pytest.mark.parametrize("content, fragment", [
    (b"", "empty body"),
    (b"{not json", "not an AdmissionReview"),
    (b"\xff\xfe\x00garbage", "not an AdmissionReview"),
    (b"[1, 2]", "not an AdmissionReview"),
    (json.dumps({"apiVersion": "v1", "kind": "Pod"}).encode(), "not an AdmissionReview"),
    (json.dumps({"apiVersion": API_VERSION, "kind": "AdmissionReview",
                 "request": {"operation": "CREATE"}}).encode(), "no request.uid"),
], ids=["empty", "not-json", "not-utf8", "json-list", "other-kind", "no-uid"])
def test_malformed_bodies_get_400_and_reach_no_handler(content: bytes, fragment: str) -> None:
    client, admission = scripted_client(lambda request: allowed())
    for path in ("/mutate", "/validate"):
        answer = client.post(path, content=content,
                             headers={"content-type": "application/json"})
        assert answer.status_code == 400
        assert fragment in answer.json()["error"]
    assert admission.seen == []


def test_a_body_over_the_cap_gets_413() -> None:
    client, admission = scripted_client(lambda request: allowed())
    padding = "x" * (MAX_BODY_BYTES + 10)
    big = json.dumps(review_body(obj={"metadata": {"name": "summary"}, "padding": padding}))
    answer = client.post("/mutate", content=big.encode(),
                         headers={"content-type": "application/json"})
    assert answer.status_code == 413

    # Without a Content-Length the size is counted while reading.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536].encode()

    answer = client.post("/mutate", content=chunks(),
                         headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert admission.seen == []


def test_a_body_just_under_the_cap_is_read() -> None:
    client, admission = scripted_client(lambda request: allowed())
    body = review_body(obj={"metadata": {"name": "summary"}, "padding": ""})
    size = len(json.dumps(body).encode())
    body["request"]["object"]["padding"] = "x" * (MAX_BODY_BYTES - size)
    content = json.dumps(body).encode()
    assert len(content) == MAX_BODY_BYTES
    assert client.post("/mutate", content=content).status_code == 200
    assert len(admission.seen) == 1


def test_a_crash_is_answered_in_the_review_with_the_uid_and_no_traceback() -> None:
    def crash(request: AdmissionRequest) -> AdmissionResponse:
        raise KeyError("secret-internal-detail")

    client, _ = scripted_client(crash)
    before = admissions_counted("CREATE", "error")
    answer = client.post("/mutate", json=review_body())
    assert answer.status_code == 200      # the API server reads the review, not the status
    body = answer.json()
    assert body["apiVersion"] == API_VERSION and body["kind"] == "AdmissionReview"
    response = body["response"]
    assert response["uid"] == UID and response["allowed"] is False
    assert response["status"]["code"] == 500
    assert UID in response["status"]["message"]
    assert "Traceback" not in answer.text and "secret-internal-detail" not in answer.text
    assert "KeyError" not in answer.text
    assert admissions_counted("CREATE", "error") == before + 1


def test_the_uid_is_echoed_and_the_request_is_typed() -> None:
    client, admission = scripted_client(lambda request: denied("no", outcome="refused"))
    answer = client.post("/validate", json=review_body(
        "UPDATE", uid="other-uid", dryRun=True, oldObject={"metadata": {}}))
    assert answer.json()["response"]["uid"] == "other-uid"
    seen = admission.seen[0]
    assert (seen.operation, seen.dry_run, seen.old_object) == ("UPDATE", True, {"metadata": {}})
    assert seen.user_info.groups == ("researchers",)


# -- health and metrics ------------------------------------------------------------------


def test_healthz_answers_before_any_client_is_built() -> None:
    built: list[bool] = []

    def factory() -> Any:
        built.append(True)
        return ScriptedAdmission(lambda request: allowed())

    client = TestClient(create_app(factory))
    answer = client.get("/healthz")
    assert (answer.status_code, answer.text) == (200, "ok")
    assert built == []
    assert client.get("/readyz").status_code == 200
    assert built == [True]


def test_readyz_is_503_while_the_admission_cannot_be_built() -> None:
    def factory() -> Any:
        raise RuntimeError("kubeconfig missing")

    client = TestClient(create_app(factory))
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert "kubeconfig missing" in answer.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_metrics_count_admissions_by_operation_and_outcome() -> None:
    def decide(request: AdmissionRequest) -> AdmissionResponse:
        if request.operation == "DELETE":
            return allowed("deleted")
        return denied("no") if request.name == "refuse-me" else allowed("submitted")

    client, _ = scripted_client(decide)
    before = {key: admissions_counted(*key) for key in
              [("CREATE", "refused"), ("CREATE", "submitted"), ("DELETE", "deleted")]}
    client.post("/mutate", json=review_body(name="refuse-me"))
    client.post("/mutate", json=review_body(name="refuse-me"))
    client.post("/mutate", json=review_body())
    client.post("/validate", json=review_body("DELETE"))
    client.post("/mutate", content=b"")          # a 400 is not an admission

    assert admissions_counted("CREATE", "refused") == before[("CREATE", "refused")] + 2
    assert admissions_counted("CREATE", "submitted") == before[("CREATE", "submitted")] + 1
    assert admissions_counted("DELETE", "deleted") == before[("DELETE", "deleted")] + 1
    text = client.get("/metrics").text
    expected = before[("CREATE", "refused")] + 2
    assert f'fntc_admissions_total{{operation="CREATE",outcome="refused"}} {expected}' in text
    assert "fntc_admission_seconds_bucket" in text and "fntc_fn_call_seconds" in text


# -- the real Admission against the sandbox ----------------------------------------------


@pytest.fixture
def real_client(sandbox: Sandbox) -> Iterator[tuple[TestClient, list[Callable[[], None]]]]:
    """The app over a real Admission (FN and Keycloak stand-ins); background jobs are
    collected rather than run, since no API server stores the Task here."""
    settings = Settings.from_env({**sandbox.env(), "FNTC_CLUSTER_NAME": "in-process"})
    keycloak = Keycloak.from_settings(settings)
    fn = FNClient(settings.fn_url, timeout=settings.request_timeout)
    jobs: list[Callable[[], None]] = []
    admission = Admission(settings, submitter=Submitter(settings, keycloak=keycloak, fn=fn),
                          tasks=NoTasks(), run_later=jobs.append)  # type: ignore[arg-type]
    yield TestClient(create_app(lambda: admission)), jobs
    keycloak.close()
    fn.close()


def test_create_without_annotations_patches_in_a_new_map(real_client, sandbox) -> None:
    client, _ = real_client
    uid = "7e0b9a52-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
    answer = client.post("/mutate", json=review_body(uid=uid, obj=task_object()))
    response = answer.json()["response"]
    assert response["uid"] == uid and response["allowed"] is True
    operations = decoded_patch(response)
    assert len(operations) == 1 and operations[0]["op"] == "add"
    assert operations[0]["path"] == "/metadata/annotations"
    fn_task = next(task for task in sandbox.fn_state.tasks.values()
                   if task.description and f"uid={uid}" in task.description)
    assert operations[0]["value"] == {ADMISSION_UID: uid, TASK_ID: str(fn_task.id),
                                      SUBMISSION: "submitted"}
    assert response["warnings"] == ["image tag '1.0' can be moved to another build; pin a "
                                     "digest (@sha256:...) to run exactly this one"]


def test_create_escapes_annotation_keys_and_overwrites_a_forged_task_id(real_client,
                                                                        sandbox) -> None:
    client, _ = real_client
    uid = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
    obj = task_object(annotations={"team": "oncology", TASK_ID: "4242",
                                   SUBMISSION: "submitted"})
    response = client.post("/mutate", json=review_body(uid=uid, obj=obj)).json()["response"]
    assert response["allowed"] is True
    fn_task = next(task for task in sandbox.fn_state.tasks.values()
                   if task.description and f"uid={uid}" in task.description)
    assert fn_task.id != 4242
    assert sorted(decoded_patch(response), key=lambda op: op["path"]) == [
        {"op": "add", "path": "/metadata/annotations/tasks.federatednode.com~1admission-uid",
         "value": uid},
        {"op": "add", "path": "/metadata/annotations/tasks.federatednode.com~1submission",
         "value": "submitted"},
        {"op": "add", "path": "/metadata/annotations/tasks.federatednode.com~1task-id",
         "value": str(fn_task.id)},
    ]


def test_dry_run_drops_forged_annotations_and_submits_nothing(real_client, sandbox) -> None:
    client, jobs = real_client
    submissions = len(sandbox.fn_state.submissions)
    obj = task_object(annotations={TASK_ID: "4242"})
    response = client.post("/mutate", json=review_body(
        uid="dry-1", obj=obj, dryRun=True)).json()["response"]
    assert response["allowed"] is True
    assert decoded_patch(response) == [
        {"op": "remove", "path": "/metadata/annotations/tasks.federatednode.com~1task-id"}]
    assert len(sandbox.fn_state.submissions) == submissions
    assert jobs == []


def test_refusal_reaches_the_client_as_one_sentence(real_client) -> None:
    client, _ = real_client
    obj = task_object(image="analytics", dataset=0)
    response = client.post("/mutate", json=review_body(obj=obj)).json()["response"]
    assert response["allowed"] is False
    assert response["status"]["message"] == (
        "Task refused: image 'analytics' has no registry: write it in full, such as "
        "ghcr.io/org/image:1.0; spec.dataset 0 must be a positive dataset id")
    assert "patch" not in response


# -- TLS ---------------------------------------------------------------------------------


def _write_pair(ca: pki.CertificateAuthority, folder: Path, stamp: int) -> tuple[Path, Path]:
    cert, key = folder / "tls.crt", folder / "tls.key"
    pki.write_key_pair(cert, key, pki.issue_serving_certificate(ca, []))
    for path in (cert, key):     # a distinct mtime, whatever the file system's resolution
        os.utime(path, (stamp, stamp))
    return cert, key


def _served_certificate(port: int, ca: pki.CertificateAuthority) -> bytes:
    context = ssl.create_default_context(cadata=ca.certificate.public_bytes(
        serialization.Encoding.PEM).decode())
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert(binary_form=True)


def _der(cert_file: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert_file.read_text())


@contextlib.contextmanager
def _served_over(tls: ReloadingContext, cert: Path, key: Path) -> Iterator[int]:
    """The webhook app served by uvicorn with ``tls``'s live context, wired as in
    __main__; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(lambda: ScriptedAdmission(lambda r: allowed())),
                            log_config=None, access_log=False, lifespan="off",
                            ssl_certfile=str(cert), ssl_keyfile=str(key))
    config.load()
    config.ssl = tls.context
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(5)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ReloadingContext, int, pki.CertificateAuthority,
                                                  Path]]:
    """The webhook app served by uvicorn over a ReloadingContext, wired as in __main__."""
    ca = pki.CertificateAuthority.create("webhook-test-ca")
    cert, key = _write_pair(ca, tmp_path, 1_000_000)
    tls = ReloadingContext(str(cert), str(key), interval=3600)
    with _served_over(tls, cert, key) as port:
        yield tls, port, ca, tmp_path


def test_tls_reload_serves_a_rotated_certificate(tls_server) -> None:
    tls, port, ca, folder = tls_server
    first = _der(folder / "tls.crt")
    assert _served_certificate(port, ca) == first
    assert tls.reload_if_changed() is False

    cert, _ = _write_pair(ca, folder, 2_000_000)
    second = _der(cert)
    assert second != first
    assert _served_certificate(port, ca) == first        # not reloaded yet
    assert tls.reload_if_changed() is True
    assert _served_certificate(port, ca) == second
    assert tls.reload_if_changed() is False


def test_tls_reload_keeps_the_old_pair_while_a_rotation_is_half_done(tls_server) -> None:
    tls, port, ca, folder = tls_server
    first = _der(folder / "tls.crt")
    key_before = (folder / "tls.key").read_bytes()
    cert, key = _write_pair(ca, folder, 2_000_000)
    new_key = key.read_bytes()
    key.write_bytes(key_before)          # the certificate is new, the key still old
    os.utime(key, (2_000_000, 2_000_000))

    assert tls.reload_if_changed() is False
    assert _served_certificate(port, ca) == first        # still serving, with the old pair

    key.write_bytes(new_key)             # the rotation completes
    os.utime(key, (2_000_001, 2_000_001))
    assert tls.reload_if_changed() is True
    assert _served_certificate(port, ca) == _der(cert)


# -- decisions of the real Admission that need no API server -----------------------------


class UnreachableTasks:
    """The API server cannot be asked whether the name is free."""

    def get(self, namespace: str, name: str) -> dict | None:
        raise urllib3.exceptions.MaxRetryError(None, "/apis", "connection refused")


def test_a_name_that_cannot_be_checked_is_refused_for_now(sandbox) -> None:
    settings = Settings.from_env({**sandbox.env(), "FNTC_CLUSTER_NAME": "in-process"})
    submitter = Submitter(settings, keycloak=Keycloak.from_settings(settings),
                          fn=FNClient(settings.fn_url))
    admission = Admission(settings, submitter=submitter, tasks=UnreachableTasks(),  # type: ignore
                          run_later=lambda job: None)
    submissions = len(sandbox.fn_state.submissions)
    response = TestClient(create_app(lambda: admission)).post(
        "/mutate", json=review_body(obj=task_object())).json()["response"]
    assert response["allowed"] is False and response["status"]["code"] == 503
    assert response["status"]["message"] == ("FNTC could not check that the Task name is "
                                             "free; try again")
    assert len(sandbox.fn_state.submissions) == submissions


def test_the_same_review_twice_submits_once(real_client, sandbox) -> None:
    client, _ = real_client
    body = review_body(uid="retried-uid-1", obj=task_object("retried"))
    submissions = len(sandbox.fn_state.submissions)
    first = client.post("/mutate", json=body).json()["response"]
    second = client.post("/mutate", json=body).json()["response"]
    assert first == second and first["allowed"] is True
    assert len(sandbox.fn_state.submissions) == submissions + 1


@pytest.mark.parametrize("status, annotations, dry_run", [
    ({"phase": "Succeeded", "taskId": 7}, {}, False),
    ({"phase": "Failed", "taskId": 7}, {}, False),
    ({"phase": "Cancelled", "taskId": 7}, {}, False),
    ({"phase": "Running", "taskId": 7}, {}, True),
    ({"phase": "Pending"}, {SUBMISSION: "deferred"}, False),
    ({}, {TASK_ID: "not-a-number"}, False),
], ids=["succeeded", "failed", "cancelled", "dry-run", "never-submitted", "garbled-id"])
def test_deletes_that_cancel_nothing(real_client, status: dict, annotations: dict,
                                     dry_run: bool) -> None:
    client, jobs = real_client
    old = {**task_object(annotations=annotations), "status": status}
    response = client.post("/validate", json=review_body(
        "DELETE", obj={}, oldObject=old, dryRun=dry_run)).json()["response"]
    assert response["allowed"] is True
    assert jobs == []


def test_delete_of_a_running_task_schedules_the_cancel(real_client) -> None:
    client, jobs = real_client
    old = {**task_object(annotations={TASK_ID: "7", ADMISSION_UID: "uid-7"}),
           "status": {"phase": "Running"}}
    response = client.post("/validate", json=review_body(
        "DELETE", obj={}, oldObject=old)).json()["response"]
    assert response["allowed"] is True
    assert response["warnings"] == ["FNTC will ask the FN to cancel task 7 once the Task "
                                    "is gone"]
    assert len(jobs) == 1


@pytest.mark.parametrize("annotations, status, reason", [
    ({TASK_ID: "7", SUBMISSION: "submitted"}, {"taskId": 7},
     "the FN task already runs as written"),
    ({SUBMISSION: "deferred"}, {"phase": "Pending"},
     "FNTC submits it to the FN as it was admitted"),
], ids=["submitted", "deferred"])
def test_spec_updates_are_refused_with_the_reason(real_client, annotations: dict,
                                                  status: dict, reason: str) -> None:
    client, _ = real_client
    old = {**task_object(annotations=annotations), "status": status}
    new = {**task_object(annotations=annotations, dataset=2), "status": status}
    response = client.post("/validate", json=review_body(
        "UPDATE", obj=new, oldObject=old)).json()["response"]
    assert response["allowed"] is False
    assert response["status"]["message"] == (
        f"the spec of a submitted Task cannot change, since {reason}; create a new Task "
        "with a new name instead")
    unchanged = client.post("/validate", json=review_body(
        "UPDATE", obj={**old, "metadata": {**old["metadata"], "labels": {"a": "b"}}},
        oldObject=old)).json()["response"]
    assert unchanged["allowed"] is True


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "Cancelled"])
def test_spec_updates_of_a_finished_task_say_to_run_a_new_one(real_client, phase: str) -> None:
    client, _ = real_client
    annotations = {TASK_ID: "7", SUBMISSION: "submitted"}
    status = {"phase": phase, "taskId": 7}
    old = {**task_object(annotations=annotations), "status": status}
    new = {**task_object(annotations=annotations, image="ghcr.io/fntc-sandbox/analytics:2.0"),
           "status": status}
    response = client.post("/validate", json=review_body(
        "UPDATE", obj=new, oldObject=old)).json()["response"]
    assert response["allowed"] is False
    assert response["status"]["message"] == ("the spec of a submitted Task cannot change; "
                                             "create a new Task with a new name to run it "
                                             "again")


# -- bodies that used to escape as 500s or hang --------------------------------------------


@pytest.mark.parametrize("content, error", [
    (json.dumps(review_body(uid="u" * 129)).encode(),
     "not an AdmissionReview: request.uid is over 128 characters"),
    (json.dumps(review_body(userInfo={"username": "alice", "groups": 5})).encode(),
     "not an AdmissionReview: request.userInfo.groups must be a list of strings"),
    (b"[" * 100_000 + b"]" * 100_000, "not an AdmissionReview: the JSON is nested too deeply"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": '
     + b'{"a":' * 50_000 + b"1" + b"}" * 50_001, "not an AdmissionReview: the JSON is nested "
     "too deeply"),
], ids=["uid-too-long", "groups-a-number", "deep-list", "deep-object"])
def test_bodies_that_break_parsing_get_400_not_500(content: bytes, error: str) -> None:
    client, admission = scripted_client(lambda request: allowed())
    answer = client.post("/mutate", content=content,
                         headers={"content-type": "application/json"})
    assert (answer.status_code, answer.json()) == (400, {"error": error})
    assert admission.seen == []


@pytest.fixture
def plain_server() -> Iterator[Callable[..., int]]:
    """Serve the app (scripted admission) over plain HTTP in a thread; returns its port."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(**app_options: Any) -> int:
        app = create_app(lambda: ScriptedAdmission(lambda r: allowed()), **app_options)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False,
                                               lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return sock.getsockname()[1]

    yield serve
    for server, thread in servers:
        server.should_exit = True
        thread.join(5)


PARTIAL_REQUEST = (b"POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 1000\r\n\r\n{\"apiVersion\": \"admission.k8s.io/v1\"")


def test_a_body_that_does_not_arrive_in_time_gets_408(plain_server) -> None:
    port = plain_server(body_seconds=0.3)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(PARTIAL_REQUEST)          # ... and never the rest
        # Headers and body may come in separate segments: read until the body is in.
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:80]
    assert b"the body did not arrive within 0.3 s" in reply


def test_a_client_leaving_mid_body_is_logged_quietly(plain_server, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    port = plain_server()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(PARTIAL_REQUEST)

    deadline = time.monotonic() + 5
    while not any("went away" in record.getMessage() for record in caplog.records):
        assert time.monotonic() < deadline, "the disconnect was not logged"
        time.sleep(0.02)
    [line] = [record for record in caplog.records if "went away" in record.getMessage()]
    assert line.levelno == logging.INFO and line.exc_info is None
    assert not any(record.exc_info or record.levelno >= logging.ERROR
                   for record in caplog.records), [r.getMessage() for r in caplog.records]


# -- caller authentication ----------------------------------------------------------------


@pytest.fixture
def mtls_server(tmp_path: Path) -> Iterator[tuple[int, pki.CertificateAuthority, Path]]:
    """The app over uvicorn with a ReloadingContext that requires client certificates of
    ``client_ca``; yields the port, the serving CA and a folder of client pairs."""
    serving_ca = pki.CertificateAuthority.create("webhook-test-ca")
    client_ca = pki.CertificateAuthority.create("api-server-client-ca")
    stranger_ca = pki.CertificateAuthority.create("someone-elses-ca")
    cert, key = _write_pair(serving_ca, tmp_path, 1_000_000)
    client_ca.write(tmp_path / "client-ca.crt", tmp_path / "client-ca.key")
    for name, ca in (("api-server", client_ca), ("stranger", stranger_ca)):
        pki.write_key_pair(tmp_path / f"{name}.crt", tmp_path / f"{name}.key",
                           pki.issue_client_certificate(ca, user=name, groups=()))
    tls = ReloadingContext(str(cert), str(key), client_ca_file=str(tmp_path / "client-ca.crt"),
                           interval=3600)
    with _served_over(tls, cert, key) as port:
        yield port, serving_ca, tmp_path


def _client_context(serving_ca: pki.CertificateAuthority, folder: Path, client: str | None,
                    *, tls12: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=serving_ca.certificate.public_bytes(
        serialization.Encoding.PEM).decode())
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if client:
        context.load_cert_chain(folder / f"{client}.crt", folder / f"{client}.key")
    return context


def _exchange(port: int, context: ssl.SSLContext) -> bytes:
    """Post a review over TLS; everything the server sent back before closing."""
    body = json.dumps(review_body()).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: webhook\r\nConnection: close\r\n"
                        b"Content-Type: application/json\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
    return reply


def _post_review(port: int, context: ssl.SSLContext) -> dict[str, Any]:
    head, _, content = _exchange(port, context).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return json.loads(content)


def test_a_caller_with_the_client_cas_certificate_is_answered(mtls_server) -> None:
    port, serving_ca, folder = mtls_server
    for tls12 in (False, True):
        context = _client_context(serving_ca, folder, "api-server", tls12=tls12)
        assert _post_review(port, context)["response"]["uid"] == UID


@pytest.mark.parametrize("client", [None, "stranger"], ids=["no-certificate", "other-ca"])
def test_a_caller_without_the_client_cas_certificate_fails_the_handshake(
        mtls_server, client: str | None) -> None:
    port, serving_ca, folder = mtls_server
    # TLS 1.2: the server's refusal ends the handshake itself.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError):
            _client_context(serving_ca, folder, client, tls12=True).wrap_socket(
                raw, server_hostname="127.0.0.1")
    # TLS 1.3: the client's side of the handshake ends first; the server then
    # drops the connection without a byte of an answer.
    try:
        reply = _exchange(port, _client_context(serving_ca, folder, client))
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        reply = b""
    assert reply == b""


# -- the command line ---------------------------------------------------------------------


def test_help_names_every_webhook_variable_and_exits_0() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FNTC_")}
    root = Path(__file__).resolve().parent.parent
    shown = subprocess.run([sys.executable, "-m", "webhook", "--help"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: python -m webhook")
    for name in ("CERT_FILE", "KEY_FILE", "CLIENT_CA_FILE", "HOST", "PORT", "HEALTH_PORT"):
        assert f"FNTC_WEBHOOK_{name} " in shown.stdout
    wrong = subprocess.run([sys.executable, "-m", "webhook", "--serve"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and wrong.stderr.startswith("usage: python -m webhook")


def test_the_probe_app_answers_health_and_readiness_and_nothing_else() -> None:
    app = create_app(lambda: ScriptedAdmission(lambda r: allowed()))
    probes = TestClient(create_probe_app(app))
    assert (probes.get("/healthz").text, probes.get("/readyz").text) == ("ok", "ok")
    assert "fntc_admissions_total" in probes.get("/metrics").text
    assert probes.post("/mutate", json=review_body()).status_code == 404
