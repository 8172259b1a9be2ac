"""A Keycloak stand-in: realm ``FederatedNode``, confidential client ``global``.

It implements what the controller and the Federated Node use: the token
endpoint (password, refresh-token and token-exchange grants), the admin user
lookup and a user's identity-provider links. Tokens are real JWTs signed with
a secret private to each state, and every lifetime is read from the state's
clock, so tests expire tokens by advancing a :class:`ManualClock`.
"""

from __future__ import annotations

import base64
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable
from urllib.parse import parse_qs, parse_qsl

import jwt
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse
from starlette.types import Scope

from standins import faults as fault_injection
from standins.clock import Clock
from standins.keycloak_users import BadQuery, KeycloakUser, find_users

__all__ = ["KeycloakRequest", "KeycloakState", "KeycloakUser", "create_keycloak_app",
           "default_keycloak_state", "seed_user_id"]

ACCESS_TOKEN_LIFETIME = timedelta(minutes=5)
REFRESH_TOKEN_LIFETIME = timedelta(days=30)
ADMIN_ROLE = "Administrator"

PASSWORD_GRANT = "password"
REFRESH_GRANT = "refresh_token"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@dataclass
class KeycloakRequest:
    """One request the stand-in received; never holds a password or a token."""

    method: str
    path: str
    query: dict[str, str]
    grant_type: str | None = None
    status: int = 0


@dataclass
class KeycloakState:
    """Everything the stand-in knows; guarded by ``lock``.

    ``admin_username`` names the one user allowed to use the admin API and to
    exchange tokens for other users (impersonation); its password is
    ``admin_password``.
    """

    clock: Clock
    client_secret: str
    admin_username: str
    admin_password: str
    users: list[KeycloakUser]
    realm: str = "FederatedNode"
    client_id: str = "global"
    signing_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    requests: list[KeycloakRequest] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def user_by_id(self, user_id: str) -> KeycloakUser | None:
        with self.lock:
            return next((user for user in self.users if user.id == user_id), None)

    def user_by_login(self, login: str) -> KeycloakUser | None:
        """Find a user by username or email, case-insensitively, as the login form does."""
        login = login.lower()
        with self.lock:
            return next((user for user in self.users
                         if login in (user.username.lower(), user.email.lower())), None)

    def issue_tokens(self, user: KeycloakUser, issuer: str, *,
                     with_refresh: bool = True) -> dict:
        """Mint a token response for ``user`` as the token endpoint would."""
        now = self.clock.now()
        session = str(uuid.uuid4())
        common = {
            "iat": int(now.timestamp()),
            "iss": issuer,
            "sub": user.id,
            "azp": self.client_id,
            "sid": session,
            "email": user.email,
            "preferred_username": user.username,
            "realm_access": {"roles": list(user.realm_roles)},
            "scope": "openid profile email",
        }
        access = self._sign({**common, "typ": "Bearer", "jti": str(uuid.uuid4()),
                             "exp": int((now + ACCESS_TOKEN_LIFETIME).timestamp())})
        answer = {
            "access_token": access,
            "expires_in": int(ACCESS_TOKEN_LIFETIME.total_seconds()),
            "token_type": "Bearer",
            "not-before-policy": 0,
            "session_state": session,
            "scope": common["scope"],
        }
        if with_refresh:
            answer["refresh_token"] = self._sign({
                **common, "typ": "Refresh", "jti": str(uuid.uuid4()),
                "exp": int((now + REFRESH_TOKEN_LIFETIME).timestamp())})
            answer["refresh_expires_in"] = int(REFRESH_TOKEN_LIFETIME.total_seconds())
        return answer

    def read_token(self, token: str, typ: str) -> KeycloakUser | None:
        """The enabled user a valid, unexpired token of type ``typ`` belongs to."""
        try:
            claims = jwt.decode(token, self.signing_key, algorithms=["HS256"],
                                options={"verify_exp": False, "verify_iat": False,
                                         "verify_nbf": False, "verify_aud": False})
        except jwt.PyJWTError:
            return None
        # NB: expiry is judged by the state's clock, not the wall clock, so
        # tests can expire a token by advancing a manual clock.
        if claims.get("typ") != typ or claims.get("azp") != self.client_id:
            return None
        if claims.get("exp", 0) <= self.clock.now().timestamp():
            return None
        if not str(claims.get("iss", "")).endswith(f"/realms/{self.realm}"):
            return None
        user = self.user_by_id(str(claims.get("sub")))
        return user if user is not None and user.enabled else None

    def _sign(self, claims: dict) -> str:
        return jwt.encode(claims, self.signing_key, algorithm="HS256")


#: Seeds user ids, so a user keeps its id from one run of the sandbox to the next.
SEED_ID_NAMESPACE = uuid.UUID("3f1d2c8e-6a4b-4c1e-9a57-0b5e2f7d9c11")


def seed_user_id(username: str) -> str:
    """The stable id the default seed gives ``username``."""
    return str(uuid.uuid5(SEED_ID_NAMESPACE, username))


def default_keycloak_state(clock: Clock) -> KeycloakState:
    """The sandbox realm the demo and the product's tests rely on."""
    created = int(clock.now().timestamp() * 1000)
    users = [
        KeycloakUser(id=seed_user_id("fn-admin"), username="fn-admin",
                     email="fn-admin@sandbox.local", first_name="Node",
                     last_name="Administrator", realm_roles=[ADMIN_ROLE]),
        KeycloakUser(id=seed_user_id("alice@example.org"), username="alice@example.org",
                     email="alice@example.org", first_name="Alice", last_name="Analyst"),
        KeycloakUser(id=seed_user_id("bob"), username="bob", email="bob@example.org",
                     first_name="Bob", last_name="Biostat"),
        KeycloakUser(id=seed_user_id("carol@example.org"), username="carol@example.org",
                     email="carol@example.org", first_name="Carol", last_name="Coder",
                     idp_links=[("github", "5551234", "carol-gh")]),
        KeycloakUser(id=seed_user_id("dave@example.org"), username="dave@example.org",
                     email="dave@example.org", first_name="Dave", last_name="Departed",
                     enabled=False),
    ]
    for user in users:
        user.created_timestamp = created
    return KeycloakState(clock=clock, client_secret="sandbox-client-secret",
                         admin_username="fn-admin",
                         admin_password="sandbox-admin-password", users=users)


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status)


def _record(scope: Scope) -> KeycloakRequest:
    query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
    return KeycloakRequest(scope["method"], scope["path"], query)


def _note_grant(record: KeycloakRequest, scope: Scope) -> None:
    record.grant_type = scope.get("state", {}).get("grant_type")


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """Client id and secret from the form or from HTTP Basic, as Keycloak accepts both."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            return client_id, secret
        except ValueError:
            return "", ""
    return form.get("client_id", ""), form.get("client_secret", "")


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


def create_keycloak_app(state: KeycloakState, faults: fault_injection.Faults | None = None
                        ) -> FastAPI:
    """Build the Keycloak stand-in over ``state``."""
    app = FastAPI(title="Keycloak stand-in", openapi_url=None, docs_url=None)
    app.state.keycloak = state
    app.state.faults = faults or fault_injection.Faults()
    fault_injection.install(app, app.state.faults)
    app.add_middleware(fault_injection.RequestRecorder, state=state, make_record=_record,
                       on_answer=_note_grant)

    def issuer(request: Request) -> str:
        return f"{str(request.base_url).rstrip('/')}/realms/{state.realm}"

    def unknown_realm(realm: str) -> JSONResponse | None:
        if realm != state.realm:
            return JSONResponse({"error": "Realm does not exist"}, 404)
        return None

    @app.get("/realms/{realm}")
    def realm_info(realm: str, request: Request) -> JSONResponse:
        if (refused := unknown_realm(realm)) is not None:
            return refused
        return JSONResponse({"realm": realm, "token-service":
                             f"{issuer(request)}/protocol/openid-connect",
                             "account-service": f"{issuer(request)}/account",
                             "tokens-not-before": 0})

    @app.get("/realms/{realm}/.well-known/openid-configuration")
    def discovery(realm: str, request: Request) -> JSONResponse:
        if (refused := unknown_realm(realm)) is not None:
            return refused
        base = f"{issuer(request)}/protocol/openid-connect"
        return JSONResponse({"issuer": issuer(request), "token_endpoint": f"{base}/token",
                             "grant_types_supported": [PASSWORD_GRANT, REFRESH_GRANT,
                                                       EXCHANGE_GRANT]})

    @app.post("/realms/{realm}/protocol/openid-connect/token")
    async def token(realm: str, request: Request) -> JSONResponse:
        if (refused := unknown_realm(realm)) is not None:
            return refused
        form: dict[str, str] = {}
        if request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            raw = (await request.body()).decode()
            form = {name: values[-1] for name, values
                    in parse_qs(raw, keep_blank_values=True).items()}
        grant_type = form.get("grant_type", "")
        request.state.grant_type = grant_type or None
        if not grant_type:
            return _oauth_error(400, "invalid_request", "Missing form parameter: grant_type")

        client_id, client_secret = _client_credentials(request, form)
        if client_id != state.client_id or not secrets.compare_digest(
                client_secret.encode(), state.client_secret.encode()):
            return _oauth_error(401, "unauthorized_client",
                                "Invalid client or Invalid client credentials")

        if grant_type == PASSWORD_GRANT:
            return _password_grant(state, form, issuer(request))
        if grant_type == REFRESH_GRANT:
            return _refresh_grant(state, form, issuer(request))
        if grant_type == EXCHANGE_GRANT:
            return _exchange_grant(state, form, issuer(request))
        return _oauth_error(400, "unsupported_grant_type", "Unsupported grant_type")

    def admin_refusal(realm: str, request: Request) -> JSONResponse | None:
        if (refused := unknown_realm(realm)) is not None:
            return refused
        caller = state.read_token(_bearer(request), "Bearer")
        if caller is None:
            return JSONResponse({"error": "HTTP 401 Unauthorized", "error_description":
                                 "Bearer token missing, invalid or expired"}, 401)
        if caller.username != state.admin_username:
            return JSONResponse({"error": "HTTP 403 Forbidden", "error_description":
                                 "The user may not view users of this realm"}, 403)
        return None

    @app.get("/admin/realms/{realm}/users")
    def list_users(realm: str, request: Request) -> JSONResponse:
        if (refused := admin_refusal(realm, request)) is not None:
            return refused
        try:
            with state.lock:
                found = find_users(state.users, dict(request.query_params))
        except BadQuery as error:
            return _oauth_error(400, "invalid_request", str(error))
        return JSONResponse([user.representation() for user in found])

    def about_user(realm: str, user_id: str, request: Request,
                   view: Callable[[KeycloakUser], object]) -> JSONResponse:
        """An admin read of one user: refused, unknown (404), or ``view`` of them."""
        if (refused := admin_refusal(realm, request)) is not None:
            return refused
        user = state.user_by_id(user_id)
        if user is None:
            return _oauth_error(404, "User not found", "No user with this id")
        return JSONResponse(view(user))

    @app.get("/admin/realms/{realm}/users/{user_id}")
    def get_user(realm: str, user_id: str, request: Request) -> JSONResponse:
        return about_user(realm, user_id, request, KeycloakUser.representation)

    @app.get("/admin/realms/{realm}/users/{user_id}/federated-identity")
    def federated_identity(realm: str, user_id: str, request: Request) -> JSONResponse:
        return about_user(realm, user_id, request, KeycloakUser.federated_identities)

    return app


def _password_grant(state: KeycloakState, form: dict[str, str], issuer: str) -> JSONResponse:
    user = state.user_by_login(form.get("username", ""))
    expected = None
    if user is not None:
        expected = (state.admin_password if user.username == state.admin_username
                    else user.password)
    password = form.get("password", "")
    # NB: the contract has wrong credentials as 400 invalid_grant; some Keycloak
    # releases answer 401 with the same body.
    if expected is None or not secrets.compare_digest(password.encode(), expected.encode()):
        return _oauth_error(400, "invalid_grant", "Invalid user credentials")
    if not user.enabled:
        return _oauth_error(400, "invalid_grant", "Account disabled")
    return JSONResponse(state.issue_tokens(user, issuer))


def _refresh_grant(state: KeycloakState, form: dict[str, str], issuer: str) -> JSONResponse:
    user = state.read_token(form.get("refresh_token", ""), "Refresh")
    if user is None:
        return _oauth_error(400, "invalid_grant", "Invalid refresh token")
    return JSONResponse(state.issue_tokens(user, issuer))


def _exchange_grant(state: KeycloakState, form: dict[str, str], issuer: str) -> JSONResponse:
    """Impersonation: the admin's access token buys tokens for another user."""
    caller = state.read_token(form.get("subject_token", ""), "Bearer")
    if caller is None:
        return _oauth_error(400, "invalid_token", "Invalid token")
    if caller.username != state.admin_username:
        return _oauth_error(403, "access_denied", "Client not allowed to exchange")

    audience = form.get("audience", "")
    if audience and audience != state.client_id:
        return _oauth_error(400, "invalid_client", "Audience not found")
    requested_type = form.get("requested_token_type") or REFRESH_TOKEN_TYPE
    if requested_type not in (REFRESH_TOKEN_TYPE, ACCESS_TOKEN_TYPE):
        return _oauth_error(400, "invalid_request", "requested_token_type unsupported")

    # Keycloak accepts a username as well as a user id here.
    subject = form.get("requested_subject", "")
    target = None
    if subject:
        target = state.user_by_id(subject) or state.user_by_login(subject)
    if target is None:
        return _oauth_error(400, "invalid_token", "Requested subject not found")
    if not target.enabled:
        return _oauth_error(400, "invalid_request", "Requested subject is disabled")

    answer = state.issue_tokens(target, issuer,
                                with_refresh=requested_type == REFRESH_TOKEN_TYPE)
    answer["issued_token_type"] = requested_type
    return JSONResponse(answer)
