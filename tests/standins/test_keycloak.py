"""The Keycloak stand-in, driven over real HTTP like the controller and the FN drive it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import httpx
import jwt
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from standins.clock import ManualClock
from standins.keycloak import (EXCHANGE_GRANT, REFRESH_TOKEN_TYPE, KeycloakState,
                               create_keycloak_app, default_keycloak_state, seed_user_id)
from standins.server import serve_in_thread

START = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
CLIENT = {"client_id": "global", "client_secret": "sandbox-client-secret"}
TOKEN_PATH = "/realms/FederatedNode/protocol/openid-connect/token"
USERS_PATH = "/admin/realms/FederatedNode/users"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def state(clock: ManualClock) -> KeycloakState:
    return default_keycloak_state(clock)


class SwappableApp:
    """One server for the whole module, serving whichever app the current test built.

    Starting and stopping a server per test would cost more than the tests.
    """

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[SwappableApp, str]]:
    swappable = SwappableApp()
    server = serve_in_thread(swappable)
    yield swappable, server.url
    server.stop()


@pytest.fixture
def keycloak(served, state: KeycloakState) -> Iterator[httpx.Client]:
    swappable, url = served
    swappable.app = create_keycloak_app(state)
    # NB: a connection per request; on a reused loopback connection every
    # answer waits ~40 ms for a delayed ACK (no TCP_NODELAY on the server).
    with httpx.Client(base_url=url, timeout=5,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:
        yield client


def admin_login(keycloak: httpx.Client) -> dict:
    answer = keycloak.post(TOKEN_PATH, data={
        "grant_type": "password", "username": "fn-admin",
        "password": "sandbox-admin-password", **CLIENT})
    assert answer.status_code == 200, answer.text
    return answer.json()


def exchange(keycloak: httpx.Client, subject_token: str, requested_subject: str,
             **extra: str) -> httpx.Response:
    form = {"grant_type": EXCHANGE_GRANT, "subject_token": subject_token,
            "requested_subject": requested_subject,
            "requested_token_type": REFRESH_TOKEN_TYPE, "audience": "global", **CLIENT}
    return keycloak.post(TOKEN_PATH, data={**form, **extra})


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def find(keycloak: httpx.Client, token: str, **params: str) -> list[dict]:
    answer = keycloak.get(USERS_PATH, params=params,
                          headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


# Token endpoint: password grant

def test_admin_password_grant_issues_access_and_refresh_tokens(keycloak):
    tokens = admin_login(keycloak)

    access = claims(tokens["access_token"])
    refresh = claims(tokens["refresh_token"])
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 300
    assert access["typ"] == "Bearer" and refresh["typ"] == "Refresh"
    assert access["azp"] == "global"
    assert access["iss"] == f"{str(keycloak.base_url).rstrip('/')}/realms/FederatedNode"
    assert access["email"] == "fn-admin@sandbox.local"
    assert access["preferred_username"] == "fn-admin"
    assert access["realm_access"]["roles"] == ["Administrator"]
    assert access["iat"] == int(START.timestamp())
    assert access["exp"] - access["iat"] == 300
    assert refresh["exp"] - refresh["iat"] == 30 * 24 * 3600


@pytest.mark.parametrize("form, status, error", [
    pytest.param({"username": "fn-admin", "password": "wrong"}, 400, "invalid_grant",
                 id="wrong-password"),
    pytest.param({"username": "alice@example.org", "password": ""}, 400, "invalid_grant",
                 id="user-without-password"),
    pytest.param({"username": "fn-admin", "password": "sandbox-admin-password",
                  "client_secret": "nope"}, 401, "unauthorized_client",
                 id="bad-client-secret"),
    pytest.param({"username": "fn-admin", "password": "sandbox-admin-password",
                  "client_id": "other"}, 401, "unauthorized_client", id="unknown-client"),
    pytest.param({"grant_type": ""}, 400, "invalid_request", id="no-grant-type"),
    pytest.param({"grant_type": "client_credentials"}, 400, "unsupported_grant_type",
                 id="unsupported-grant"),
])
def test_token_endpoint_refusals(keycloak, form, status, error):
    answer = keycloak.post(TOKEN_PATH, data={"grant_type": "password", **CLIENT, **form})

    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert answer.json()["error_description"]


def test_admin_may_log_in_with_email(keycloak):
    answer = keycloak.post(TOKEN_PATH, data={
        "grant_type": "password", "username": "FN-Admin@sandbox.local",
        "password": "sandbox-admin-password", **CLIENT})

    assert answer.status_code == 200
    assert claims(answer.json()["access_token"])["preferred_username"] == "fn-admin"


def test_client_credentials_may_come_as_http_basic(keycloak):
    answer = keycloak.post(TOKEN_PATH, auth=("global", "sandbox-client-secret"), data={
        "grant_type": "password", "username": "fn-admin",
        "password": "sandbox-admin-password"})

    assert answer.status_code == 200


def test_disabled_user_cannot_log_in(keycloak, state):
    dave = next(user for user in state.users if user.username == "dave@example.org")
    dave.password = "dave-password"

    answer = keycloak.post(TOKEN_PATH, data={"grant_type": "password", **CLIENT,
                                             "username": "dave@example.org",
                                             "password": "dave-password"})

    assert answer.status_code == 400
    assert answer.json()["error_description"] == "Account disabled"


def test_unknown_realm_is_404(keycloak):
    answer = keycloak.post("/realms/other/protocol/openid-connect/token",
                           data={"grant_type": "password", **CLIENT})

    assert answer.status_code == 404


# Token endpoint: refresh grant

def test_refresh_grant_accepts_refresh_tokens_only(keycloak):
    tokens = admin_login(keycloak)

    refreshed = keycloak.post(TOKEN_PATH, data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **CLIENT})
    with_access = keycloak.post(TOKEN_PATH, data={
        "grant_type": "refresh_token", "refresh_token": tokens["access_token"], **CLIENT})

    assert refreshed.status_code == 200
    assert claims(refreshed.json()["access_token"])["sub"] == seed_user_id("fn-admin")
    assert with_access.status_code == 400
    assert with_access.json()["error"] == "invalid_grant"


def test_refresh_token_expires_after_thirty_days(keycloak, clock):
    tokens = admin_login(keycloak)
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **CLIENT}

    clock.advance(30 * 24 * 3600 - 1)
    still_valid = keycloak.post(TOKEN_PATH, data=form)
    clock.advance(2)
    expired = keycloak.post(TOKEN_PATH, data=form)

    assert still_valid.status_code == 200
    assert expired.status_code == 400
    assert expired.json()["error"] == "invalid_grant"


def test_refresh_token_from_another_keycloak_is_refused(keycloak, clock):
    other = default_keycloak_state(clock)
    foreign = other.issue_tokens(other.users[1], "http://elsewhere/realms/FederatedNode")

    answer = keycloak.post(TOKEN_PATH, data={
        "grant_type": "refresh_token", "refresh_token": foreign["refresh_token"], **CLIENT})

    assert answer.status_code == 400


# Token endpoint: token exchange (impersonation)

def test_admin_exchanges_for_a_users_refresh_token(keycloak):
    admin = admin_login(keycloak)

    answer = exchange(keycloak, admin["access_token"], seed_user_id("alice@example.org"))

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["issued_token_type"] == REFRESH_TOKEN_TYPE
    refresh = claims(body["refresh_token"])
    assert refresh["typ"] == "Refresh"
    assert refresh["email"] == "alice@example.org"
    assert refresh["azp"] == "global"
    refreshed = keycloak.post(TOKEN_PATH, data={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"], **CLIENT})
    assert claims(refreshed.json()["access_token"])["email"] == "alice@example.org"


def test_exchange_for_an_access_token_gives_no_refresh_token(keycloak):
    admin = admin_login(keycloak)

    answer = exchange(keycloak, admin["access_token"], seed_user_id("bob"),
                      requested_token_type=ACCESS_TYPE)

    assert answer.status_code == 200
    assert "refresh_token" not in answer.json()
    assert claims(answer.json()["access_token"])["email"] == "bob@example.org"


def test_only_the_admin_may_exchange(keycloak):
    admin = admin_login(keycloak)
    alice = exchange(keycloak, admin["access_token"], seed_user_id("alice@example.org"),
                     requested_token_type=ACCESS_TYPE).json()

    answer = exchange(keycloak, alice["access_token"], seed_user_id("bob"))

    assert answer.status_code == 403
    assert answer.json()["error"] == "access_denied"


def test_exchange_with_an_expired_admin_token_fails(keycloak, clock):
    admin = admin_login(keycloak)
    clock.advance(301)

    answer = exchange(keycloak, admin["access_token"], seed_user_id("bob"))

    assert answer.status_code == 400


@pytest.mark.parametrize("subject", [
    pytest.param("no-such-user", id="unknown"),
    pytest.param(seed_user_id("dave@example.org"), id="disabled"),
    pytest.param("", id="empty"),
])
def test_exchange_for_unknown_or_disabled_subject_is_400(keycloak, subject):
    admin = admin_login(keycloak)

    answer = exchange(keycloak, admin["access_token"], subject)

    assert answer.status_code == 400
    assert set(answer.json()) == {"error", "error_description"}


def test_exchange_with_bad_client_secret_is_401(keycloak):
    admin = admin_login(keycloak)

    answer = exchange(keycloak, admin["access_token"], seed_user_id("bob"),
                      client_secret="wrong")

    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized_client"


# Admin API: user lookup, quirks included

def test_no_filter_returns_every_user(keycloak):
    token = admin_login(keycloak)["access_token"]

    everyone = find(keycloak, token)

    assert len(everyone) == 5


def test_empty_filter_values_count_as_absent_and_return_everyone(keycloak):
    token = admin_login(keycloak)["access_token"]

    found = find(keycloak, token, email="", exact="true")

    assert len(found) == 5


def test_exact_email_lookup_is_case_insensitive_and_exact(keycloak):
    token = admin_login(keycloak)["access_token"]

    found = find(keycloak, token, email="Carol@Example.org", exact="true")
    partial = find(keycloak, token, email="carol", exact="true")

    assert [user["username"] for user in found] == ["carol@example.org"]
    assert found[0]["id"] == seed_user_id("carol@example.org")
    assert partial == []


def test_without_exact_the_filter_is_a_substring_match(keycloak):
    token = admin_login(keycloak)["access_token"]

    found = find(keycloak, token, email="example.org")

    assert sorted(user["email"] for user in found) == [
        "alice@example.org", "bob@example.org", "carol@example.org", "dave@example.org"]


def test_username_lookup(keycloak):
    token = admin_login(keycloak)["access_token"]

    assert [user["email"] for user in find(keycloak, token, username="bob",
                                           exact="true")] == ["bob@example.org"]
    assert find(keycloak, token, username="bob@example.org", exact="true") == []


def test_lookup_by_identity_provider_link(keycloak):
    token = admin_login(keycloak)["access_token"]

    linked = find(keycloak, token, idpAlias="github", idpUserId="5551234")
    wrong_id = find(keycloak, token, idpAlias="github", idpUserId="999")

    assert [user["email"] for user in linked] == ["carol@example.org"]
    assert wrong_id == []


def test_search_is_prefix_and_paging_applies(keycloak):
    token = admin_login(keycloak)["access_token"]

    by_prefix = find(keycloak, token, search="car")
    by_infix = find(keycloak, token, search="*example*")
    second_page = find(keycloak, token, first="1", max="2")

    assert [user["username"] for user in by_prefix] == ["carol@example.org"]
    assert len(by_infix) == 4
    assert [user["username"] for user in second_page] == ["bob", "carol@example.org"]


def test_user_and_federated_identities_by_id(keycloak):
    token = admin_login(keycloak)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    carol = seed_user_id("carol@example.org")

    user = keycloak.get(f"{USERS_PATH}/{carol}", headers=headers)
    links = keycloak.get(f"{USERS_PATH}/{carol}/federated-identity", headers=headers)
    missing = keycloak.get(f"{USERS_PATH}/nobody", headers=headers)

    assert user.json()["email"] == "carol@example.org"
    assert links.json() == [{"identityProvider": "github", "userId": "5551234",
                             "userName": "carol-gh"}]
    assert missing.status_code == 404


def test_admin_api_refuses_missing_expired_and_non_admin_tokens(keycloak, clock):
    admin = admin_login(keycloak)
    bob = exchange(keycloak, admin["access_token"], seed_user_id("bob"),
                   requested_token_type=ACCESS_TYPE).json()

    missing = keycloak.get(USERS_PATH)
    refresh_token = keycloak.get(USERS_PATH, headers={
        "Authorization": f"Bearer {admin['refresh_token']}"})
    not_admin = keycloak.get(USERS_PATH, headers={
        "Authorization": f"Bearer {bob['access_token']}"})
    clock.advance(300)
    expired = keycloak.get(USERS_PATH, headers={
        "Authorization": f"Bearer {admin['access_token']}"})

    assert missing.status_code == 401
    assert refresh_token.status_code == 401
    assert not_admin.status_code == 403
    assert expired.status_code == 401


# Bookkeeping and faults

def test_requests_are_recorded_without_secrets(keycloak, state):
    admin = admin_login(keycloak)
    exchange(keycloak, admin["access_token"], seed_user_id("bob"))
    find(keycloak, admin["access_token"], email="bob@example.org", exact="true")

    grants = [request.grant_type for request in state.requests]
    lookups = [request.query for request in state.requests if request.path == USERS_PATH]
    assert grants == ["password", EXCHANGE_GRANT, None]
    assert lookups == [{"email": "bob@example.org", "exact": "true"}]
    assert all(request.status == 200 for request in state.requests)
    recorded = repr(state.requests)
    assert "sandbox-admin-password" not in recorded
    assert admin["access_token"] not in recorded
    assert "sandbox-client-secret" not in recorded


def test_injected_fault_answers_once_then_keycloak_recovers(keycloak, state):
    added = keycloak.post("/_standin/faults", json={
        "method": "POST", "path_prefix": TOKEN_PATH, "status": 503,
        "body": {"error": "temporarily_unavailable"}})

    failed = keycloak.post(TOKEN_PATH, data={"grant_type": "password", **CLIENT,
                                             "username": "fn-admin",
                                             "password": "sandbox-admin-password"})
    recovered = admin_login(keycloak)

    assert added.status_code == 201
    assert failed.status_code == 503
    assert failed.json() == {"error": "temporarily_unavailable"}
    assert recovered["access_token"]
    assert [request.status for request in state.requests] == [503, 200]


def test_manual_clock_moves_only_when_told():
    clock = ManualClock(datetime(2024, 1, 1, 12, 0))

    before = clock.now()
    clock.advance(90)

    assert before == datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert (clock.now() - before).total_seconds() == 90
    with pytest.raises(ValueError):
        clock.advance(-1)
