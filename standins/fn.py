"""A Federated Node backend stand-in: tasks, their status, logs and results.

It authenticates the way the FN does, by running a refresh-token grant
against Keycloak (the Keycloak stand-in, over HTTP) with whatever bearer it
receives, so only a Keycloak refresh token for client ``global`` gets in.
Task life is computed from the state's clock (see :mod:`standins.fn_state`);
the body checks live in :mod:`standins.fn_submission`.
"""

from __future__ import annotations

import json

import httpx
import jwt
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from standins import faults as fault_injection
from standins.fn_control import control_routes
from standins.fn_listing import list_tasks
from standins.fn_state import (ANALYTICS_DIGEST, ANALYTICS_IMAGE, RESULTS_EXPIRED, FNRequest,
                               FNState, FNTask, ImageBehaviour, Project, default_fn_state,
                               results_tarball, results_zip)
from standins.fn_submission import (Caller, FNRefusal, check_submission, internal_error,
                                    refusal)

__all__ = ["ANALYTICS_DIGEST", "ANALYTICS_IMAGE", "FNState", "FNTask", "FNRequest",
           "ImageBehaviour", "Project", "create_fn_app", "default_fn_state"]

ADMIN_ROLE = "Administrator"
KEYCLOAK_TIMEOUT = 10.0


class _InternalErrors:
    """Turn any crash inside the app into the FN's ``500 Internal Error``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            if scope["type"] != "http" or started:
                raise
            await JSONResponse({"error": "Internal Error"}, 500)(scope, receive, send)


async def authenticate(state: FNState, request: Request) -> Caller:
    """Who is calling, found the FN's way: refresh the bearer at Keycloak.

    NB: the FN does not verify the token itself; Keycloak refusing the
    refresh grant (an access token, an expired or foreign token) is what
    turns a caller away.
    """
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not token:
        raise refusal(401, "Token missing")

    token_url = (f"{state.keycloak_url.rstrip('/')}/realms/{state.realm}"
                 "/protocol/openid-connect/token")
    form = {"grant_type": "refresh_token", "client_id": state.client_id,
            "client_secret": state.client_secret, "refresh_token": token}
    try:
        answer = await keycloak_client(request.app).post(token_url, data=form)
    except httpx.HTTPError as error:
        raise internal_error() from error
    if answer.status_code != 200:
        raise refusal(401, "Failed to login")

    claims = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
    roles = claims.get("realm_access", {}).get("roles", [])
    return Caller(user_id=claims["sub"], email=claims.get("email", ""),
                  is_admin=ADMIN_ROLE in roles)


def keycloak_client(app: FastAPI) -> httpx.AsyncClient:
    """One client for the app's calls to Keycloak, made on first use inside the
    server's event loop; a client per call would build a TLS context each time
    (tens of milliseconds), which the real FN's connection pool does not pay."""
    client = getattr(app.state, "keycloak_client", None)
    if client is None:
        client = app.state.keycloak_client = httpx.AsyncClient(timeout=KEYCLOAK_TIMEOUT)
    return client


async def json_body(request: Request) -> object:
    """The JSON body, refused as the FN refuses it (415 not JSON, 400 unreadable)."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise refusal(415, "Unsupported Media Type: the body must be JSON")
    try:
        return json.loads(await request.body())
    except ValueError:
        raise refusal(400, "The body is not valid JSON") from None


def create_fn_app(state: FNState, faults: fault_injection.Faults | None = None) -> FastAPI:
    """Build the FN stand-in over ``state``."""
    app = FastAPI(title="Federated Node stand-in", openapi_url=None, docs_url=None)
    app.state.fn = state
    app.state.faults = faults or fault_injection.Faults()
    app.add_middleware(_InternalErrors)
    fault_injection.install(app, app.state.faults)
    app.add_middleware(fault_injection.RequestRecorder, state=state,
                       make_record=lambda scope: FNRequest(scope["method"], scope["path"]))
    app.include_router(control_routes(state))

    @app.exception_handler(FNRefusal)
    async def answer_refusal(request: Request, error: FNRefusal) -> JSONResponse:
        return JSONResponse(error.body, error.status)

    async def visible_task(request: Request, task_id: str) -> tuple[Caller, FNTask]:
        caller = await authenticate(state, request)
        with state.lock:
            task = state.tasks.get(int(task_id)) if task_id.isdigit() else None
        if task is None:
            raise refusal(404, f"Task with id {task_id} does not exist")
        if not caller.is_admin and task.requested_by != caller.user_id:
            raise refusal(403, "User does not have permission to access this task")
        return caller, task

    @app.get("/health_check")
    async def health_check() -> JSONResponse:
        try:
            answer = await keycloak_client(app).get(
                f"{state.keycloak_url.rstrip('/')}/realms/{state.realm}", timeout=3.0)
            healthy = answer.status_code == 200
        except httpx.HTTPError:
            healthy = False
        if healthy:
            return JSONResponse({"status": "ok", "keycloak": True})
        return JSONResponse({"status": "non operational", "keycloak": False}, 502)

    @app.get("/ready_check")
    async def ready_check() -> JSONResponse:
        return JSONResponse({"status": "ready"})

    @app.post("/tasks")
    async def create_task(request: Request) -> JSONResponse:
        caller = await authenticate(state, request)
        submission = check_submission(state, await json_body(request), caller,
                                      request.headers.get("project-name"))
        now = state.clock.now()
        task = state.add_task(FNTask(
            id=0, name=submission.name, docker_image=submission.image,
            description=submission.description,
            task_controller=submission.task_controller, requested_by=caller.user_id,
            owner_email=caller.email, dataset_id=submission.dataset_id,
            created_at=now, updated_at=now, behaviour=submission.behaviour,
            executors=submission.executors, tags=submission.tags, inputs=submission.inputs,
            outputs=submission.outputs, resources=submission.resources,
            db_query=submission.db_query, repository=submission.repository,
            review_required=state.review_enabled))
        return JSONResponse({"task_id": task.id}, 201)

    @app.post("/tasks/validate")
    async def validate_task(request: Request) -> Response:
        caller = await authenticate(state, request)
        check_submission(state, await json_body(request), caller,
                         request.headers.get("project-name"))
        return PlainTextResponse("Ok")

    @app.get("/tasks")
    async def all_tasks(request: Request) -> JSONResponse:
        caller = await authenticate(state, request)
        if not caller.is_admin:
            raise refusal(403, "Only administrators can list tasks")
        with state.lock:
            tasks = list(state.tasks.values())
        return JSONResponse(list_tasks(tasks, dict(request.query_params), state.clock.now()))

    @app.get("/tasks/{task_id}")
    async def get_task(task_id: str, request: Request) -> JSONResponse:
        _, task = await visible_task(request, task_id)
        with state.lock:
            return JSONResponse(task.view(state.clock.now()))

    @app.post("/tasks/{task_id}/cancel")
    async def cancel_task(task_id: str, request: Request) -> JSONResponse:
        _, task = await visible_task(request, task_id)
        with state.lock:
            if task.cancelled_at is not None:
                state.cancels.append((task.id, 500))
                raise refusal(500, "Task already cancelled")
            task.cancelled_at = task.updated_at = state.clock.now()
            state.cancels.append((task.id, 201))
            return JSONResponse(task.view(state.clock.now()), 201)

    @app.get("/tasks/{task_id}/logs")
    async def task_logs(task_id: str, request: Request) -> JSONResponse:
        _, task = await visible_task(request, task_id)
        with state.lock:
            return JSONResponse({"logs": task.logs(state.clock.now())})

    @app.get("/tasks/{task_id}/results")
    async def task_results(task_id: str, request: Request) -> Response:
        caller, task = await visible_task(request, task_id)
        now = state.clock.now()
        with state.lock:
            if now > task.created_at + state.results_ttl:
                raise refusal(500, RESULTS_EXPIRED)
            review = task.review_status()
            if task.review_required and not caller.is_admin and review != "Approved Release":
                raise FNRefusal(400, {"status": review})
            files = task.results_files(now)
            results_format = state.results_format
        if results_format == "tar.gz":
            return Response(results_tarball(files, now), media_type="application/gzip",
                            headers={"Content-Disposition":
                                     "inline; filename=results.tar.gz"})
        filename = f"{state.node_name}-{task.id}-results.zip"
        return Response(results_zip(files), media_type="application/zip",
                        headers={"Content-Disposition": f"inline; filename={filename}"})

    return app
