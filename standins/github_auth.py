"""How the GitHub stand-in decides who is calling: app JWTs and installation tokens.

An app proves itself with a short-lived RS256 JWT signed by its private key;
with it, it may only look up installations and mint installation tokens. The
tokens it mints are opaque, last one hour and reach only the repositories
they were scoped to. Every refusal here is a 401 or 403 with GitHub's error
body, so the product meets the same answers it would meet at GitHub.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import datetime

import jwt

DOCUMENTATION_URL = "https://docs.github.com/rest"

#: GitHub refuses app JWTs that claim to live longer than this.
MAX_JWT_LIFETIME = 600
#: How far in the future ``iat`` may be before it counts as clock skew gone wrong.
IAT_LEEWAY = 30
TOKEN_LIFETIME = 3600

#: Permission levels, weakest first; a token may hold at most what the app holds.
LEVELS = ("none", "read", "write")


class ApiError(Exception):
    """An answer other than success, in GitHub's ``{"message", ...}`` shape."""

    def __init__(self, status: int, message: str, *, errors: list | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict:
        body: dict = {"message": self.message, "documentation_url": DOCUMENTATION_URL}
        if self.errors is not None:
            body["errors"] = self.errors
        body["status"] = str(self.status)
        return body


def bearer(authorization: str | None) -> str | None:
    """The credential from ``Authorization: Bearer x`` (or the older ``token x``)."""
    if not authorization:
        return None
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() not in ("bearer", "token") or not credential.strip():
        return None
    return credential.strip()


def verify_app_jwt(authorization: str | None, *, public_key_pem: bytes,
                   accepted_issuers: set[str], now: datetime) -> None:
    """Refuse, with a 401, any app JWT GitHub would refuse.

    Times are checked against the stand-in's clock rather than the wall clock,
    so tests can age a JWT without waiting.
    """
    token = bearer(authorization)
    if token is None:
        raise ApiError(401, "A JSON web token is required to reach this endpoint.")
    try:
        claims = jwt.decode(token, public_key_pem, algorithms=["RS256"],
                            options={"verify_exp": False, "verify_iat": False,
                                     "verify_nbf": False, "verify_aud": False})
    except jwt.PyJWTError:
        raise ApiError(401, "The JSON web token could not be decoded or its "
                            "signature did not verify.") from None

    if str(claims.get("iss", "")) not in accepted_issuers:
        raise ApiError(401, "No GitHub App matches the JWT's 'iss' claim.")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, (int, float)) or isinstance(iat, bool):
        raise ApiError(401, "The JWT's 'iat' claim must be a number of seconds.")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise ApiError(401, "The JWT's 'exp' claim must be a number of seconds.")
    moment = now.timestamp()
    if iat > moment + IAT_LEEWAY:
        raise ApiError(401, "The JWT's 'iat' claim is in the future; it must be a time "
                            "in the past.")
    if exp <= moment:
        raise ApiError(401, "The JWT has expired: its 'exp' claim is in the past.")
    if exp - iat > MAX_JWT_LIFETIME:
        raise ApiError(401, "The JWT's 'exp' claim is too far in the future: an app JWT "
                            "may live at most 10 minutes.")


@dataclass(frozen=True)
class TokenGrant:
    """What one installation access token may do, and until when."""

    installation_id: int
    repositories: frozenset[str]
    permissions: dict[str, str]
    expires_at: datetime

    def allows(self, permission: str, level: str) -> bool:
        held = self.permissions.get(permission, "none")
        return LEVELS.index(held) >= LEVELS.index(level)


def new_installation_token() -> str:
    """An opaque token shaped like GitHub's: ``ghs_`` and 36 letters or digits."""
    alphabet = string.ascii_letters + string.digits
    return "ghs_" + "".join(secrets.choice(alphabet) for _ in range(36))


def narrowed_permissions(app_permissions: dict[str, str],
                         requested: dict | None) -> dict[str, str]:
    """The permissions a token gets: what was asked for, never more than the app has."""
    if requested is None:
        return dict(app_permissions)
    if not isinstance(requested, dict):
        raise ApiError(422, "'permissions' must be an object.")
    granted: dict[str, str] = {}
    for name, level in requested.items():
        held = app_permissions.get(name, "none")
        if level not in LEVELS or LEVELS.index(level) > LEVELS.index(held):
            raise ApiError(422, f"The permissions requested are not granted to this "
                                f"installation: {name}={level}.")
        granted[name] = level
    granted.setdefault("metadata", "read")
    return granted
