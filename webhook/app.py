"""The webhook's HTTP surface: AdmissionReview endpoints, health and metrics.

Input is checked before anything else: a body over the size cap is 413, one
that is not an AdmissionReview is 400, and a crash while deciding is still
answered as an AdmissionReview (500, with the request uid) so the API
server shows a sentence rather than a broken connection.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .admission import Admission
from .metrics import ADMISSION_SECONDS, ADMISSIONS, REGISTRY
from .review import AdmissionRequest, MalformedReview, errored, review_response

log = logging.getLogger(__name__)

#: AdmissionReviews carry the object (and the old one on UPDATE); Tasks are small.
MAX_BODY_BYTES = 3 * 2**20


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(admission_factory: Callable[[], Admission]) -> FastAPI:
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
        declared = http_request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _problem(413, f"body over {MAX_BODY_BYTES} bytes")
        body = bytearray()
        async for chunk in http_request.stream():
            body.extend(chunk)
            if len(body) > MAX_BODY_BYTES:
                return _problem(413, f"body over {MAX_BODY_BYTES} bytes")
        if not body:
            return _problem(400, "empty body: expected an AdmissionReview")
        try:
            request = AdmissionRequest.parse(json.loads(body))
        except (ValueError, MalformedReview) as error:
            return _problem(400, f"not an AdmissionReview: {error}")

        started = time.monotonic()
        try:
            answer = await run_in_threadpool(admission().review, request)
        except Exception:  # noqa: BLE001 - any crash still gets an answer with the uid
            log.exception("admission review failed",
                          extra={"namespace": request.namespace, "task": request.name,
                                 "uid": request.uid})
            answer = errored("FNTC failed while reviewing this Task; the webhook's log "
                             f"has the details under uid {request.uid}")
        ADMISSIONS.labels(request.operation or "UNKNOWN", answer.outcome or "allowed").inc()
        ADMISSION_SECONDS.labels(request.operation or "UNKNOWN").observe(
            time.monotonic() - started)
        return JSONResponse(review_response(request.uid, answer))

    app.add_api_route("/mutate", handle, methods=["POST"])
    app.add_api_route("/validate", handle, methods=["POST"])

    @app.get("/healthz")
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz")
    def readyz() -> Response:
        try:
            admission()
        except Exception as error:  # noqa: BLE001 - readiness reports, never raises
            return _problem(503, f"not ready: {type(error).__name__}: {error}")
        return PlainTextResponse("ok")

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
