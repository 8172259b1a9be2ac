"""The Keycloak client finds exactly the user a Task names, and caches tokens."""

from __future__ import annotations

from urllib.parse import parse_qs

import httpx
import pytest

from taskcore.keycloak import Keycloak, KeycloakError, UnknownUser

USERS = [
    {"id": "u-alice", "username": "alice@example.org", "email": "alice@example.org",
     "enabled": True},
    {"id": "u-alicia", "username": "alicia", "email": "alice@example.org.evil",
     "enabled": True},
    {"id": "u-dave", "username": "dave", "email": "dave@example.org", "enabled": False},
]


class FakeKeycloak:
    """A transport answering like Keycloak, substring matching included."""

    def __init__(self) -> None:
        self.calls: list[httpx.Request] = []
        self.refuse_admin_token_once = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        if request.url.path.endswith("/token"):
            form = {key: values[0] for key, values in parse_qs(request.content.decode()).items()}
            if form["grant_type"] == "password":
                return httpx.Response(200, json={"access_token": f"admin-{len(self.calls)}",
                                                 "refresh_token": "admin-refresh",
                                                 "expires_in": 300})
            return httpx.Response(200, json={"refresh_token": f"user-{form['requested_subject']}"})
        if self.refuse_admin_token_once:
            self.refuse_admin_token_once = False
            return httpx.Response(401, json={"error": "HTTP 401 Unauthorized"})
        params = request.url.params
        if "email" in params:
            found = [u for u in USERS if params["email"] in u["email"]]
        elif "username" in params:
            found = [u for u in USERS if params["username"] in u["username"]]
        else:
            found = USERS
        return httpx.Response(200, json=found)

    def count(self, path_end: str) -> int:
        return sum(1 for call in self.calls if call.url.path.endswith(path_end))


@pytest.fixture
def fake() -> FakeKeycloak:
    return FakeKeycloak()


@pytest.fixture
def keycloak(fake: FakeKeycloak) -> Keycloak:
    return Keycloak("http://kc.test", realm="FederatedNode", client_id="global",
                    client_secret="s", admin_username="admin", admin_password="pw",
                    transport=httpx.MockTransport(fake))


def test_email_lookup_is_exact_even_when_keycloak_matches_more(keycloak, fake):
    user = keycloak.find_user(email="alice@example.org")
    assert user.id == "u-alice"
    lookup = [c for c in fake.calls if c.url.path.endswith("/users")][0]
    assert dict(lookup.url.params) == {"email": "alice@example.org", "exact": "true"}


def test_no_identifier_never_reaches_keycloak(keycloak, fake):
    with pytest.raises(UnknownUser):
        keycloak.find_user()
    assert fake.calls == []


def test_only_the_identifier_given_is_sent(keycloak, fake):
    keycloak.find_user(username="alicia")
    lookup = [c for c in fake.calls if c.url.path.endswith("/users")][0]
    assert "email" not in lookup.url.params


def test_disabled_and_unknown_users_are_refused(keycloak):
    with pytest.raises(UnknownUser, match="disabled"):
        keycloak.find_user(username="dave")
    with pytest.raises(UnknownUser, match="no Keycloak user"):
        keycloak.find_user(email="nobody@example.org")


def test_username_must_agree_with_email(keycloak):
    with pytest.raises(UnknownUser, match="not 'bob'"):
        keycloak.find_user(email="alice@example.org", username="bob")


def test_admin_login_and_user_tokens_are_reused(keycloak, fake):
    user = keycloak.find_user(email="alice@example.org")
    first = keycloak.fn_token_for(user)
    assert keycloak.fn_token_for(user) == first == "user-u-alice"
    keycloak.find_user(email="alice@example.org")
    assert fake.count("/token") == 2       # one admin login, one exchange


def test_a_refused_admin_token_means_one_new_login(keycloak, fake):
    keycloak.find_user(email="alice@example.org")
    fake.refuse_admin_token_once = True
    assert keycloak.find_user(email="alice@example.org").id == "u-alice"
    logins = [c for c in fake.calls if c.url.path.endswith("/token")]
    assert len(logins) == 2


def test_keycloak_down_is_transient():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)
    keycloak = Keycloak("http://kc.test", realm="r", client_id="c", client_secret="s",
                        admin_username="a", admin_password="p",
                        transport=httpx.MockTransport(refuse))
    with pytest.raises(KeycloakError) as raised:
        keycloak.find_user(email="alice@example.org")
    assert raised.value.transient
