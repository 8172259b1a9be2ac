"""The webhook's HTTP surface: AdmissionReview endpoints, health and metrics.

Input is checked before anything else: a body over the size cap is 413, one
that does not arrive within a deadline is 408, one that is not an
AdmissionReview is 400, and a crash while deciding is still answered as an
AdmissionReview (500, with the request uid) so the API server shows a
sentence rather than a broken connection.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

import anyio
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect

from .admission import Admission
from .metrics import ADMISSION_SECONDS, ADMISSIONS, REGISTRY
from .review import AdmissionRequest, MalformedReview, errored, review_response

log = logging.getLogger(__name__)

#: Operations counted by name in the metrics; anything else counts as OTHER, so a
#: caller cannot grow the number of metric series.
KNOWN_OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")

#: AdmissionReviews carry the object (and the old one on UPDATE); Tasks are small.
MAX_BODY_BYTES = 3 * 2**20
#: The API server sends a review in one go; a body still trickling in after this
#: long holds a connection and a worker for nothing.
BODY_SECONDS = 10.0


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _BodyRefused(Exception):
    def __init__(self, answer: Response) -> None:
        self.answer = answer


async def _read_body(http_request: Request, seconds: float) -> bytes:
    """The whole body, or :class:`_BodyRefused` with the answer to give instead."""
    declared = http_request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _BodyRefused(_problem(413, f"body over {MAX_BODY_BYTES} bytes"))
    body = bytearray()
    try:
        with anyio.fail_after(seconds):
            async for chunk in http_request.stream():
                body.extend(chunk)
                if len(body) > MAX_BODY_BYTES:
                    raise _BodyRefused(_problem(413, f"body over {MAX_BODY_BYTES} bytes"))
    except TimeoutError:
        raise _BodyRefused(_problem(408, f"the body did not arrive within {seconds:g} s")
                           ) from None
    except ClientDisconnect:
        # Nobody is left to read an answer; one quiet line says what happened.
        log.info("the client went away while sending a review",
                 extra={"path": http_request.url.path, "bytes": len(body)})
        raise _BodyRefused(Response(status_code=400)) from None
    return bytes(body)


def _parse(body: bytes) -> AdmissionRequest:
    """The typed review, or :class:`_BodyRefused` with a 400 saying why not."""
    if not body:
        raise _BodyRefused(_problem(400, "empty body: expected an AdmissionReview"))
    try:
        return AdmissionRequest.parse(json.loads(body))
    except (ValueError, MalformedReview) as error:
        why = str(error)
    except RecursionError:
        why = "the JSON is nested too deeply"
    except Exception as error:  # noqa: BLE001 - whatever a body does, it is a 400
        why = f"unreadable ({type(error).__name__})"
    raise _BodyRefused(_problem(400, f"not an AdmissionReview: {why}"))


def create_app(admission_factory: Callable[[], Admission], *,
               body_seconds: float = BODY_SECONDS) -> FastAPI:
    """The app; ``admission_factory`` is called once, at the first review, so the
    process can start (and answer /healthz) before its clients are built."""
    app = FastAPI(title="FNTC admission webhook", docs_url=None, redoc_url=None,
                  openapi_url=None)
    holder: dict[str, Admission] = {}

    def admission() -> Admission:
        if "admission" not in holder:
            holder["admission"] = admission_factory()
        return holder["admission"]

    async def handle(http_request: Request) -> Response:
        try:
            request = _parse(await _read_body(http_request, body_seconds))
        except _BodyRefused as refused:
            return refused.answer

        started = time.monotonic()
        try:
            answer = await run_in_threadpool(admission().review, request)
        except Exception:  # noqa: BLE001 - any crash still gets an answer with the uid
            log.exception("admission review failed",
                          extra={"namespace": request.namespace, "task": request.name,
                                 "uid": request.uid})
            answer = errored("FNTC failed while reviewing this Task; the webhook's log "
                             f"has the details under uid {request.uid}")
        operation = request.operation if request.operation in KNOWN_OPERATIONS else "OTHER"
        ADMISSIONS.labels(operation, answer.outcome or "allowed").inc()
        ADMISSION_SECONDS.labels(operation).observe(
            time.monotonic() - started)
        return JSONResponse(review_response(request.uid, answer))

    app.add_api_route("/mutate", handle, methods=["POST"])
    app.add_api_route("/validate", handle, methods=["POST"])

    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    def readyz() -> Response:
        try:
            admission()
        except Exception as error:  # noqa: BLE001 - readiness reports, never raises
            return _problem(503, f"not ready: {type(error).__name__}: {error}")
        return PlainTextResponse("ok")

    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    probes: dict[str, Callable[[], Any]] = {"/healthz": healthz, "/readyz": readyz,
                                            "/metrics": metrics}
    for path, endpoint in probes.items():
        app.add_api_route(path, endpoint, methods=["GET"])
    app.state.probes = probes
    return app


def create_probe_app(app: FastAPI) -> FastAPI:
    """The probes and metrics of ``app`` alone, for a plain-HTTP port.

    With client certificates required on the HTTPS port, the kubelet (which has
    none to present) could not probe there. This app serves no review, so it
    needs no caller authentication.
    """
    probe_app = FastAPI(title="FNTC admission webhook probes", docs_url=None,
                        redoc_url=None, openapi_url=None)
    for path, endpoint in app.state.probes.items():
        probe_app.add_api_route(path, endpoint, methods=["GET"])
    return probe_app
