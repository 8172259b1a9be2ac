"""Fault injection shared by every stand-in.

A test (or the demo, over HTTP) asks a stand-in to answer the next N requests
matching a method and path prefix with a chosen status and body, optionally
after a delay. The middleware answers such requests before routing, so the
stand-in's own state is untouched by a faulted request, as with a proxy or
gateway failing in front of the real system.

Control endpoints added by :func:`install`:

- ``POST /_standin/faults`` with JSON ``{"method", "path_prefix", "status",
  "body", "times", "delay", "headers"}`` (only ``path_prefix`` and ``status``
  are required; ``method`` defaults to ``*``, any method);
- ``DELETE /_standin/faults`` drops every pending fault;
- ``GET /_standin/faults`` lists what is still pending.

Requests under ``/_standin/`` are never faulted.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field

import anyio
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTROL_PREFIX = "/_standin/"
ANY_METHOD = "*"


@dataclass
class Fault:
    """One injected answer.

    ``status`` 0 means "no answer of its own": the request waits ``delay``
    seconds and then reaches the stand-in as usual (a slow, not a failing,
    system).
    """

    method: str
    path_prefix: str
    status: int
    body: dict | list | str = ""
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    remaining: int = 1

    def matches(self, method: str, path: str) -> bool:
        method_ok = self.method == ANY_METHOD or self.method == method.upper()
        return method_ok and path.startswith(self.path_prefix)

    def response(self) -> Response:
        if isinstance(self.body, str):
            return PlainTextResponse(self.body, self.status, headers=self.headers)
        return JSONResponse(self.body, self.status, headers=self.headers)


class Faults:
    """A thread-safe table of pending faults; the first matching one wins."""

    def __init__(self) -> None:
        self._pending: list[Fault] = []
        self._lock = threading.Lock()
        self.served: list[tuple[str, str, int]] = []

    def add(self, method: str, path_prefix: str, status: int,
            body: dict | list | str = "", times: int = 1, delay: float = 0.0,
            headers: dict[str, str] | None = None) -> Fault:
        """Answer the next ``times`` matching requests with this fault."""
        if times < 1:
            raise ValueError("times must be at least 1")
        fault = Fault(method=method.upper(), path_prefix=path_prefix, status=status,
                      body=body, delay=delay, headers=dict(headers or {}),
                      remaining=times)
        with self._lock:
            self._pending.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first fault matching this request, if any."""
        with self._lock:
            for fault in self._pending:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._pending.remove(fault)
                    self.served.append((method.upper(), path, fault.status))
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [Fault(**asdict(fault)) for fault in self._pending]


class FaultMiddleware:
    """ASGI middleware answering injected faults before the app routes the request."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        fault = self.faults.take(scope["method"], scope["path"])
        if fault is not None:
            if fault.delay > 0:
                await anyio.sleep(fault.delay)
            if fault.status:
                await fault.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class FaultRequest(BaseModel):
    method: str = ANY_METHOD
    path_prefix: str
    status: int
    body: dict | list | str = ""
    times: int = Field(default=1, ge=1)
    delay: float = Field(default=0.0, ge=0)
    headers: dict[str, str] = {}


def fault_routes(faults: Faults) -> APIRouter:
    """The ``/_standin/faults`` control endpoints for one fault table."""
    router = APIRouter()

    @router.post("/_standin/faults", status_code=201)
    def add_fault(request: FaultRequest) -> dict:
        fault = faults.add(request.method, request.path_prefix, request.status,
                           request.body, times=request.times, delay=request.delay,
                           headers=request.headers)
        return asdict(fault)

    @router.delete("/_standin/faults")
    def clear_faults() -> dict:
        faults.clear()
        return {"pending": []}

    @router.get("/_standin/faults")
    def list_faults() -> dict:
        return {"pending": [asdict(fault) for fault in faults.pending()]}

    return router


def install(app: FastAPI, faults: Faults) -> None:
    """Add the fault middleware and the control endpoints to ``app``.

    Call it while building the app, before it starts serving.
    """
    app.add_middleware(FaultMiddleware, faults=faults)
    app.include_router(fault_routes(faults))


class RequestRecorder:
    """ASGI middleware that appends a record of every request (control paths aside)
    to ``state.requests`` and notes the answer's status on it, so tests can count
    what a stand-in was asked.

    ``make_record(scope)`` builds the record, which must have a ``status`` field;
    ``on_answer(record, scope)``, if given, may note more once the answer starts.
    """

    def __init__(self, app: ASGIApp, state: object, make_record, on_answer=None) -> None:
        self.app = app
        self.state = state
        self.make_record = make_record
        self.on_answer = on_answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        record = self.make_record(scope)
        with self.state.lock:
            self.state.requests.append(record)

        async def send_and_note_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                if self.on_answer is not None:
                    self.on_answer(record, scope)
            await send(message)

        await self.app(scope, receive, send_and_note_status)
