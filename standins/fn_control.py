"""Control endpoints of the FN stand-in, for a test or demo in another process.

- ``POST /_standin/clock/advance`` ``{"seconds": 30}`` moves a manual clock;
- ``GET /_standin/tasks`` lists every task with its owner and live status;
- ``POST /_standin/tasks/{id}/review`` ``{"decision": "approve" | "block"}``
  decides a result review, as a node administrator would;
- ``GET``/``POST``/``DELETE /_standin/faults`` come from :mod:`standins.faults`.

None of them needs a token: they are not part of the FN, only of the sandbox.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from standins.fn_state import FNState, fn_time


class ClockAdvance(BaseModel):
    seconds: float = Field(ge=0)


class ReviewDecision(BaseModel):
    decision: Literal["approve", "block"]


def control_routes(state: FNState) -> APIRouter:
    """The ``/_standin/`` endpoints over one FN state."""
    router = APIRouter(prefix="/_standin")

    @router.post("/clock/advance")
    def advance_clock(request: ClockAdvance) -> JSONResponse:
        advance = getattr(state.clock, "advance", None)
        if advance is None:
            return JSONResponse({"error": "this node runs on the system clock"}, 409)
        return JSONResponse({"now": advance(request.seconds).isoformat()})

    @router.get("/tasks")
    def all_tasks() -> JSONResponse:
        now = state.clock.now()
        with state.lock:
            tasks = [{
                "id": task.id,
                "name": task.name,
                "description": task.description,
                "owner": task.owner_email,
                "docker_image": task.docker_image,
                "dataset_id": task.dataset_id,
                "task_controller": task.task_controller,
                "created_at": fn_time(task.created_at),
                "status": task.status(now),
                "review_status": task.review_status(),
            } for task in sorted(state.tasks.values(), key=lambda task: task.id)]
        return JSONResponse({"tasks": tasks})

    @router.post("/tasks/{task_id}/review")
    def review_task(task_id: int, request: ReviewDecision) -> JSONResponse:
        with state.lock:
            task = state.tasks.get(task_id)
            if task is None:
                return JSONResponse({"error": f"Task with id {task_id} does not exist"}, 404)
            task.review = request.decision == "approve"
            task.updated_at = state.clock.now()
            return JSONResponse({"id": task.id, "review_status": task.review_status()})

    return router
