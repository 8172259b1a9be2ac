"""AdmissionReview (admission.k8s.io/v1), typed with Kubernetes' own field names.

Every answer is built by one of the small helpers below and finished by
:func:`review_response`, which echoes the request uid, so no path through
the webhook can forget it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "admission.k8s.io/v1"
#: The API server's uids are 36 characters; a longer one is not from it, and every
#: uid is kept a while (see the webhook's recent answers), so its size is bounded.
MAX_UID_LENGTH = 128


class MalformedReview(ValueError):
    """The body is not an AdmissionReview we can answer."""


@dataclass(frozen=True)
class UserInfo:
    username: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    operation: str
    namespace: str
    name: str
    user_info: UserInfo
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None
    dry_run: bool
    kind: dict[str, str] = field(default_factory=dict)
    sub_resource: str = ""

    @classmethod
    def parse(cls, review: Any) -> "AdmissionRequest":
        if not isinstance(review, dict):
            raise MalformedReview("the body is not a JSON object")
        if review.get("apiVersion") != API_VERSION or review.get("kind") != "AdmissionReview":
            raise MalformedReview(f"expected an AdmissionReview of {API_VERSION}")
        request = review.get("request")
        if not isinstance(request, dict) or not isinstance(request.get("uid"), str):
            raise MalformedReview("the AdmissionReview has no request or no request.uid")
        if len(request["uid"]) > MAX_UID_LENGTH:
            raise MalformedReview(f"request.uid is over {MAX_UID_LENGTH} characters")
        user = request.get("userInfo") if isinstance(request.get("userInfo"), dict) else {}
        groups = user.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(group, str) for group in groups):
            raise MalformedReview("request.userInfo.groups must be a list of strings")
        obj, old = request.get("object"), request.get("oldObject")
        return cls(
            uid=request["uid"],
            operation=str(request.get("operation") or ""),
            namespace=str(request.get("namespace") or ""),
            name=str(request.get("name") or ""),
            user_info=UserInfo(str(user.get("username") or ""), tuple(groups)),
            object=obj if isinstance(obj, dict) else None,
            old_object=old if isinstance(old, dict) else None,
            dry_run=bool(request.get("dryRun")),
            kind=request.get("kind") if isinstance(request.get("kind"), dict) else {},
            sub_resource=str(request.get("subResource") or ""),
        )


@dataclass
class AdmissionResponse:
    allowed: bool
    message: str = ""
    code: int = 200
    reason: str = ""
    patch: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Why we decided, for metrics: "submitted", "refused", "deferred", ...
    outcome: str = ""


def allowed(outcome: str = "allowed", *, warnings: list[str] | None = None,
            message: str = "") -> AdmissionResponse:
    return AdmissionResponse(True, message=message, warnings=warnings or [], outcome=outcome)


def denied(message: str, *, outcome: str = "refused", code: int = 403,
           warnings: list[str] | None = None) -> AdmissionResponse:
    return AdmissionResponse(False, message=message, code=code, reason="Forbidden",
                             warnings=warnings or [], outcome=outcome)


def patched(patch: list[dict[str, Any]], outcome: str, *,
            warnings: list[str] | None = None) -> AdmissionResponse:
    return AdmissionResponse(True, patch=patch, warnings=warnings or [], outcome=outcome)


def errored(message: str, *, code: int = 500) -> AdmissionResponse:
    return AdmissionResponse(False, message=message, code=code, reason="InternalError",
                             outcome="error")


def review_response(uid: str, answer: AdmissionResponse) -> dict[str, Any]:
    """The AdmissionReview sent back to the API server."""
    response: dict[str, Any] = {"uid": uid, "allowed": answer.allowed}
    if not answer.allowed or answer.message:
        response["status"] = {"code": answer.code, "message": answer.message}
        if answer.reason:
            response["status"]["reason"] = answer.reason
    if answer.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(answer.patch).encode()).decode()
    if answer.warnings:
        # The API server caps the total size of warnings; keep each short.
        response["warnings"] = [warning[:256] for warning in answer.warnings[:10]]
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def pointer(*parts: str) -> str:
    """An RFC 6901 JSON pointer: ``~`` and ``/`` inside a key are escaped."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def annotation_patch(obj: dict[str, Any], values: dict[str, str | None]) -> list[dict[str, Any]]:
    """Operations that set (or, for None, remove) annotations, creating the map if absent."""
    existing = (obj.get("metadata") or {}).get("annotations")
    if not isinstance(existing, dict):
        kept = {key: value for key, value in values.items() if value is not None}
        return [{"op": "add", "path": "/metadata/annotations", "value": kept}] if kept else []
    ops: list[dict[str, Any]] = []
    for key, value in values.items():
        path = pointer("metadata", "annotations", key)
        if value is not None:
            ops.append({"op": "add", "path": path, "value": value})
        elif key in existing:
            ops.append({"op": "remove", "path": path})
    return ops
