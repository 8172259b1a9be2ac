"""Who may talk to the webhook, and what a DELETE may cancel, through the real API server.

The stack's webhook requires the client certificate the API server presents to
webhooks (FNTC_WEBHOOK_CLIENT_CA_FILE): a review posted to it by anyone else never
gets past the TLS handshake, while Tasks applied through the API server work as ever.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.request
import uuid
from typing import Any, Callable

import pytest

from devenv.stack import LocalStack
from standins.sandbox import Sandbox
from tests.conftest import task_manifest
from webhook.review import API_VERSION

TASK_ID = "tasks.federatednode.com/task-id"


def fn_tasks_for(sandbox: Sandbox, namespace: str, name: str) -> list[Any]:
    needle = f" namespace={namespace} task={name} "
    with sandbox.fn_state.lock:
        return [task for task in sandbox.fn_state.tasks.values()
                if needle in f"{task.description or ''} "]


def eventually(check: Callable[[], Any], *, timeout: float = 5.0) -> Any:
    """Poll ``check`` until it returns something true, for work the webhook process does."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def forged_review(namespace: str, name: str) -> bytes:
    """A CREATE review as the API server would send it, for alice's Task."""
    return json.dumps({"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "operation": "CREATE", "namespace": namespace, "name": name,
        "userInfo": {"username": "system:serviceaccount:argocd:argocd-application-controller",
                     "groups": ["system:serviceaccounts"]},
        "object": task_manifest(name, namespace), "dryRun": False}}).encode()


def post_to_webhook(stack: LocalStack, body: bytes, *, tls12: bool) -> bytes:
    """POST ``body`` to the webhook's /mutate, trusting its certificate but presenting
    none; what came back before the connection closed."""
    assert stack.webhook is not None
    context = ssl.create_default_context(cadata=stack.plane.ca_pem.decode())
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    request = (b"POST /mutate HTTP/1.1\r\nHost: webhook\r\nConnection: close\r\n"
               b"Content-Type: application/json\r\n"
               + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    with socket.create_connection(("127.0.0.1", stack.webhook.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(request)
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
    return reply


def test_a_review_posted_straight_to_the_webhook_fails_the_tls_handshake(
        stack, sandbox, namespace) -> None:
    submissions = len(sandbox.fn_state.submissions)
    body = forged_review(namespace, "forged")

    with pytest.raises(ssl.SSLError):       # TLS 1.2: the handshake itself fails
        post_to_webhook(stack, body, tls12=True)
    try:                                    # TLS 1.3: dropped before any answer
        reply = post_to_webhook(stack, body, tls12=False)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        reply = b""
    assert reply == b""
    assert len(sandbox.fn_state.submissions) == submissions
    assert fn_tasks_for(sandbox, namespace, "forged") == []

    # The API server presents its certificate, so the same Task applied through it works.
    result = stack.apply(task_manifest("forged", namespace))
    assert result.returncode == 0, result.stderr
    assert len(fn_tasks_for(sandbox, namespace, "forged")) == 1


def test_the_probes_answer_without_a_certificate_on_their_own_port(stack) -> None:
    assert stack.webhook is not None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for path in ("/healthz", "/readyz"):
        with opener.open(stack.webhook.health_url + path, timeout=5) as answer:
            assert (answer.status, answer.read()) == (200, b"ok")


def test_delete_warns_and_cancels_only_once_the_task_is_gone(stack, sandbox,
                                                             namespace) -> None:
    manifest = task_manifest("held", namespace)
    manifest["metadata"]["finalizers"] = ["example.org/hold"]
    assert stack.apply(manifest).returncode == 0
    [fn_task] = fn_tasks_for(sandbox, namespace, "held")

    result = stack.plane.kubectl("delete", "task", "held", "-n", namespace, "--wait=false",
                                 check=False)
    assert result.returncode == 0, result.stderr
    assert (f"Warning: FNTC will ask the FN to cancel task {fn_task.id} once the Task is "
            "gone") in result.stderr
    # The finalizer keeps the Task stored, so its FN task keeps running; a cancel
    # sent at the DELETE itself would have landed within this second.
    assert not eventually(lambda: fn_task.cancelled_at is not None, timeout=1.0)

    stack.plane.kubectl("patch", "task", "held", "-n", namespace, "--type=json",
                        "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')
    assert eventually(lambda: fn_task.cancelled_at is not None), "not cancelled once gone"
    assert [task_id for task_id, status in sandbox.fn_state.cancels
            if task_id == fn_task.id] == [fn_task.id]
