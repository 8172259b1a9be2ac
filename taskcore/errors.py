"""Errors raised by the clients of outside systems.

Each client turns transport and HTTP failures into these classes in one
place, so callers decide by kind (worth retrying later or not) rather than
by status code, and people see one sentence instead of a traceback.
"""

from __future__ import annotations

import json

import httpx

#: How much of a response body may reach a message or a log line.
BODY_EXCERPT_LIMIT = 300


def excerpt(text: str, limit: int = BODY_EXCERPT_LIMIT) -> str:
    """Trim a response body so a large or hostile answer cannot flood a log."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def answer_text(response: httpx.Response, keys: tuple[str, ...]) -> str:
    """The reason an error answer gives: the named fields of a JSON body, joined,
    else the body as text, trimmed either way."""
    try:
        body = response.json()
    except ValueError:
        return excerpt(response.text) or response.reason_phrase
    if isinstance(body, dict):
        parts = [body[key] for key in keys if isinstance(body.get(key), str) and body[key]]
        if parts:
            return excerpt(": ".join(parts))
    return excerpt(json.dumps(body))


def unreachable(system: str, what: str, error: Exception) -> str:
    """The sentence for a call that got no answer: a timeout or a transport failure.
    Only the error's class is named; its text may hold a URL with a token in it."""
    if isinstance(error, httpx.TimeoutException):
        return f"{system} did not answer in time while {what}"
    return f"{system} could not be reached while {what}: {type(error).__name__}"


class ServiceError(Exception):
    """A call to an outside system failed.

    ``transient`` is true when the same call may succeed later (the system is
    down, slow, or answered 5xx), false when it refused the request for good.
    """

    service = "service"

    def __init__(self, message: str, *, status: int | None = None,
                 transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.transient = transient

    def __str__(self) -> str:
        return self.message


class RateLimited(ServiceError):
    """The system asked us to slow down; ``retry_after`` is in seconds."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, status=status, transient=True)
        self.retry_after = retry_after
