"""Users of the Keycloak stand-in, and how the admin API finds them.

The search follows Keycloak's admin API, including the part that bites:
a query without any filter parameter returns every user of the realm, and an
empty value counts as no filter. A client that turns a missing email into
``?email=`` gets the whole realm back, not an empty list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: Keycloak's page size when ``max`` is not given.
DEFAULT_MAX_RESULTS = 100

#: Query parameters that make the admin API filter by attribute.
ATTRIBUTE_FILTERS = ("username", "email", "firstName", "lastName")


@dataclass
class KeycloakUser:
    """A realm user.

    ``idp_links`` holds ``(alias, user_id, user_name)`` for each identity
    provider the user is linked to (GitHub, for instance). ``password`` is
    None for users who cannot log in with a password, which is every user in
    the default seed (the admin's password lives on the state): the
    controller never holds user passwords and acts for users by token exchange.
    """

    id: str
    username: str
    email: str
    first_name: str = ""
    last_name: str = ""
    realm_roles: list[str] = field(default_factory=list)
    idp_links: list[tuple[str, str, str]] = field(default_factory=list)
    enabled: bool = True
    password: str | None = None
    created_timestamp: int = 0

    def representation(self) -> dict:
        """The user as the admin API shows it (no roles, no credentials)."""
        return {
            "id": self.id,
            "username": self.username,
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "enabled": self.enabled,
            "emailVerified": True,
            "createdTimestamp": self.created_timestamp,
            "totp": False,
            "disableableCredentialTypes": [],
            "requiredActions": [],
            "notBefore": 0,
        }

    def federated_identities(self) -> list[dict]:
        return [{"identityProvider": alias, "userId": user_id, "userName": user_name}
                for alias, user_id, user_name in self.idp_links]


class BadQuery(ValueError):
    """A query parameter Keycloak could not convert (``first`` or ``max``)."""


def _attribute(user: KeycloakUser, name: str) -> str:
    return {
        "username": user.username,
        "email": user.email,
        "firstName": user.first_name,
        "lastName": user.last_name,
    }[name]


def _matches_search(user: KeycloakUser, term: str) -> bool:
    """Keycloak's ``search``: prefix by default, ``*x*`` infix, ``"x"`` exact."""
    term = term.strip().lower()
    fields = [user.username, user.email, user.first_name, user.last_name]
    fields = [value.lower() for value in fields]
    if len(term) >= 2 and term.startswith('"') and term.endswith('"'):
        return term[1:-1] in fields
    infix = term.startswith("*")
    core = term.strip("*")
    if infix:
        return any(core in value for value in fields)
    return any(value.startswith(core) for value in fields)


def _matches_filters(user: KeycloakUser, filters: Mapping[str, str], exact: bool) -> bool:
    for name in ATTRIBUTE_FILTERS:
        wanted = filters.get(name)
        if wanted is None:
            continue
        value = _attribute(user, name).lower()
        wanted = wanted.lower()
        if exact and value != wanted:
            return False
        if not exact and wanted not in value:
            return False
    if "enabled" in filters and str(user.enabled).lower() != filters["enabled"].lower():
        return False
    alias = filters.get("idpAlias")
    idp_user_id = filters.get("idpUserId")
    if alias is not None or idp_user_id is not None:
        linked = any((alias is None or link_alias == alias)
                     and (idp_user_id is None or link_user_id == idp_user_id)
                     for link_alias, link_user_id, _ in user.idp_links)
        if not linked:
            return False
    return True


def _page_bounds(params: Mapping[str, str]) -> tuple[int, int]:
    try:
        first = int(params.get("first", 0))
        limit = int(params.get("max", DEFAULT_MAX_RESULTS))
    except ValueError as error:
        raise BadQuery("first and max must be integers") from error
    if limit < 0:
        limit = DEFAULT_MAX_RESULTS
    return max(first, 0), limit


def find_users(users: Iterable[KeycloakUser], query: Mapping[str, str]) -> list[KeycloakUser]:
    """Apply ``GET /admin/realms/{realm}/users`` query parameters to ``users``.

    Empty values are dropped first, exactly as if the parameter was absent.
    ``search`` takes precedence over attribute filters; with neither, every
    user matches. Results are ordered by username and paged by first/max.
    """
    params = {name: value for name, value in query.items() if value != ""}
    first, limit = _page_bounds(params)
    exact = params.get("exact", "false").lower() == "true"

    ordered = sorted(users, key=lambda user: user.username)
    if "search" in params:
        term = params["search"]
        if term.startswith("id:"):
            found = [user for user in ordered if user.id == term[3:].strip()]
        else:
            found = [user for user in ordered if _matches_search(user, term)]
    else:
        found = [user for user in ordered if _matches_filters(user, params, exact)]
    return found[first:first + limit]
