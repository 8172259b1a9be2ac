"""Client of Keycloak: find the researcher a Task names and act as them.

The controller never holds a researcher's password. It logs in as the
realm admin, finds the user, and exchanges its admin token for a refresh
token of that user, which is what the FN accepts.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import httpx
import jwt

from .errors import ServiceError, answer_text, unreachable

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"

#: A user's FN token is reused this long; the FN's refresh tokens last far longer.
USER_TOKEN_REUSE = 600.0

#: The realm role that makes a user an administrator of the Federated Node.
FN_ADMINISTRATOR_ROLE = "Administrator"


class KeycloakError(ServiceError):
    service = "keycloak"


class UnknownUser(KeycloakError):
    """No such researcher, or not one we can act for; the Task must be refused."""


@dataclass(frozen=True)
class KeycloakUser:
    id: str
    username: str
    email: str


class Keycloak:
    """Synchronous client, safe to share across threads; caches tokens it may reuse."""

    def __init__(self, base_url: str, *, realm: str, client_id: str, client_secret: str,
                 admin_username: str, admin_password: str, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)
        self._realm = realm
        self._client = {"client_id": client_id, "client_secret": client_secret}
        self._admin = {"username": admin_username, "password": admin_password}
        self._clock = clock
        self._lock = threading.Lock()
        self._admin_tokens: tuple[str, str, float] | None = None  # access, refresh, expiry
        self._user_tokens: dict[str, tuple[str, float]] = {}
        self._user_roles: dict[str, tuple[str, ...] | None] = {}

    @classmethod
    def from_settings(cls, settings, **kwargs: Any) -> "Keycloak":
        settings.require_keycloak()
        return cls(settings.keycloak_url, realm=settings.keycloak_realm,
                   client_id=settings.keycloak_client_id,
                   client_secret=settings.keycloak_client_secret,
                   admin_username=settings.keycloak_admin_username,
                   admin_password=settings.keycloak_admin_password,
                   timeout=settings.request_timeout, **kwargs)

    def close(self) -> None:
        self._http.close()

    # -- transport -------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, what: str, timeout: float | None,
              **kwargs: Any) -> Any:
        try:
            response = self._http.request(
                method, path, timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                **kwargs)
        except httpx.HTTPError as error:
            raise KeycloakError(unreachable("Keycloak", what, error),
                                transient=True) from error
        if response.is_success:
            try:
                return response.json()
            except ValueError as error:
                raise KeycloakError(f"Keycloak answered in a form FNTC cannot read while {what}",
                                    transient=True) from error
        detail = answer_text(response, ("error", "error_description", "errorMessage"))
        status = response.status_code
        if status >= 500 or status == 429:
            raise KeycloakError(f"Keycloak failed while {what} ({status}): {detail}",
                                status=status, transient=True)
        raise KeycloakError(f"Keycloak refused {what} ({status}): {detail}", status=status)

    def _token_request(self, form: dict[str, str], *, what: str,
                       timeout: float | None) -> dict[str, Any]:
        path = f"/realms/{self._realm}/protocol/openid-connect/token"
        return self._send("POST", path, data={**self._client, **form}, what=what,
                          timeout=timeout)

    # -- tokens ----------------------------------------------------------------------------

    def _admin_session(self, timeout: float | None) -> tuple[str, str]:
        with self._lock:
            cached = self._admin_tokens
        if cached and cached[2] > self._clock():
            return cached[0], cached[1]
        answer = self._token_request({"grant_type": "password", **self._admin},
                                     what="logging in as the realm admin", timeout=timeout)
        access, refresh = answer.get("access_token"), answer.get("refresh_token")
        if not access or not refresh:
            raise KeycloakError("Keycloak's admin login answer has no tokens")
        # Renew a little before expiry so a token never runs out mid-request.
        lifetime = max(float(answer.get("expires_in") or 60) - 30, 5)
        with self._lock:
            self._admin_tokens = (access, refresh, self._clock() + lifetime)
        return access, refresh

    def _as_admin(self, call: Callable[[str], Any], timeout: float | None) -> Any:
        """Run ``call`` with the admin access token; when Keycloak no longer
        accepts a cached one (revoked, or Keycloak restarted), log in again once."""
        admin_access, _ = self._admin_session(timeout)
        try:
            return call(admin_access)
        except KeycloakError as error:
            if error.status not in (400, 401):
                raise
            with self._lock:
                if self._admin_tokens and self._admin_tokens[0] == admin_access:
                    self._admin_tokens = None
            return call(self._admin_session(timeout)[0])

    def admin_fn_token(self, *, timeout: float | None = None) -> str:
        """A token the FN accepts for the realm admin (for listing and cancelling)."""
        return self._admin_session(timeout)[1]

    def fn_token_for(self, user: KeycloakUser, *, timeout: float | None = None) -> str:
        """A refresh token of ``user``, from a token exchange, for calls to the FN."""
        with self._lock:
            cached = self._user_tokens.get(user.id)
        if cached and cached[1] > self._clock():
            return cached[0]
        answer = self._as_admin(lambda admin_access: self._token_request({
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": admin_access,
            "requested_subject": user.id,
            "requested_token_type": REFRESH_TOKEN_TYPE,
            "audience": self._client["client_id"],
        }, what=f"obtaining a token for {user.email or user.username}", timeout=timeout),
            timeout)
        token = answer.get("refresh_token")
        if not token:
            raise KeycloakError("Keycloak's token exchange answer has no refresh_token")
        with self._lock:
            self._user_tokens[user.id] = (token, self._clock() + USER_TOKEN_REUSE)
            self._user_roles[user.id] = realm_roles_in(answer.get("access_token"))
        return token

    def realm_roles(self, user: KeycloakUser, *,
                    timeout: float | None = None) -> tuple[str, ...] | None:
        """The realm roles of ``user``, as the access token of its last token exchange
        lists them (exchanging one now if none is cached); None when Keycloak put no
        roles in the token.

        NB: a realm whose client scopes leave ``realm_access`` out of access tokens
        yields None here; reading the admin API's role mappings instead would remove
        that blind spot, at one more call per researcher.
        """
        with self._lock:
            known = user.id in self._user_roles and user.id in self._user_tokens
        if not known:
            self.fn_token_for(user, timeout=timeout)
        with self._lock:
            return self._user_roles.get(user.id)

    def is_admin_login(self, user: KeycloakUser) -> bool:
        """Whether ``user`` is the realm admin FNTC itself logs in as."""
        admin = self._admin["username"].lower()
        return bool(admin) and admin in (user.username.lower(), user.email.lower())

    def forget_user_token(self, user: KeycloakUser) -> None:
        """Drop a cached token the FN no longer accepts, so the next call exchanges anew."""
        with self._lock:
            self._user_tokens.pop(user.id, None)
            self._user_roles.pop(user.id, None)

    # -- users -----------------------------------------------------------------------------

    def find_user(self, *, email: str = "", username: str = "", github_id: str = "",
                  github_alias: str = "github", timeout: float | None = None) -> KeycloakUser:
        """The one enabled user the Task names: by email, else username, else GitHub link.

        Only the identifier we have is sent, with ``exact=true``, and the answer is
        checked again here: Keycloak lists every user when a filter is absent, so a
        missing field must never reach it as an empty one.
        """
        if email:
            query, wanted = {"email": email, "exact": "true"}, ("email", email)
        elif username:
            query, wanted = {"username": username, "exact": "true"}, ("username", username)
        elif github_id and github_alias:
            query, wanted = {"idpAlias": github_alias, "idpUserId": github_id}, None
        else:
            raise UnknownUser("the Task names no user")
        described = email or username or f"linked to GitHub user {github_id}"
        found = self._as_admin(lambda admin_access: self._send(
            "GET", f"/admin/realms/{self._realm}/users", params=query,
            headers={"Authorization": f"Bearer {admin_access}"},
            what=f"looking up the user {described}", timeout=timeout), timeout)
        if not isinstance(found, list):
            raise KeycloakError("Keycloak answered the user lookup in an unknown shape",
                                transient=True)
        if wanted:
            key, value = wanted
            found = [user for user in found
                     if isinstance(user, dict) and str(user.get(key, "")).lower() == value.lower()]
        if not found:
            raise UnknownUser(f"no Keycloak user {described} exists in realm {self._realm}")
        if len(found) > 1:
            raise UnknownUser(f"the user {described} matches {len(found)} Keycloak users; "
                              "name the user by email")
        user = found[0]
        if user.get("enabled") is False:
            raise UnknownUser(f"the Keycloak user {described} is disabled")
        record = KeycloakUser(str(user.get("id")), str(user.get("username") or ""),
                              str(user.get("email") or ""))
        if email and username and record.username.lower() != username.lower():
            raise UnknownUser(f"the Keycloak user with email {email} has username "
                              f"{record.username!r}, not {username!r}")
        if not wanted:
            self._check_github_link(record, github_alias, github_id, timeout)
        return record

    def _check_github_link(self, user: KeycloakUser, alias: str, github_id: str,
                           timeout: float | None) -> None:
        """Confirm the link itself: a Keycloak release that ignores the idp query
        parameters lists every user, and a realm of one would then match anyone."""
        links = self._as_admin(lambda admin_access: self._send(
            "GET", f"/admin/realms/{self._realm}/users/{user.id}/federated-identity",
            headers={"Authorization": f"Bearer {admin_access}"},
            what=f"checking the GitHub link of GitHub user {github_id}", timeout=timeout),
            timeout)
        linked = isinstance(links, list) and any(
            isinstance(link, dict) and link.get("identityProvider") == alias
            and str(link.get("userId")) == github_id for link in links)
        if not linked:
            raise UnknownUser(f"no Keycloak user linked to GitHub user {github_id} exists "
                              f"in realm {self._realm}")


def realm_roles_in(access_token: Any) -> tuple[str, ...] | None:
    """The ``realm_access.roles`` claim of an access token, or None when absent.

    The signature is not checked: the token came straight from Keycloak over the
    connection FNTC opened, and only its claims are read, never trusted by anyone else.
    """
    if not isinstance(access_token, str):
        return None
    try:
        claims = jwt.decode(access_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    realm_access = claims.get("realm_access")
    roles = realm_access.get("roles") if isinstance(realm_access, dict) else None
    if not isinstance(roles, list):
        return None
    return tuple(str(role) for role in roles)
