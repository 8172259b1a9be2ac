"""Configuration, read once from the environment.

Every outside address has a default that works inside a cluster where the
Federated Node was installed with its Helm chart; the local sandbox
overrides them through the same variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

PREFIX = "FNTC_"


class SettingsError(ValueError):
    """The configuration cannot work; the message names the variable."""


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.replace(",", " ").split() if part.strip())


def _read_secret(env: Mapping[str, str], name: str) -> str:
    """A secret comes from ``NAME`` or from the file named by ``NAME_FILE``."""
    if env.get(PREFIX + name):
        return env[PREFIX + name]
    path = env.get(PREFIX + name + "_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as error:
            raise SettingsError(f"{PREFIX}{name}_FILE: cannot read {path}: "
                                f"{error.strerror}") from error
    return ""


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{PREFIX}{name} must not be negative")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the webhook and the poller can be told from outside."""

    fn_url: str = "http://backend.federatednode.svc.cluster.local:5000"
    keycloak_url: str = "http://keycloak.keycloak.svc.cluster.local"
    keycloak_realm: str = "FederatedNode"
    keycloak_client_id: str = "global"
    keycloak_client_secret: str = field(default="", repr=False)
    keycloak_admin_username: str = ""
    keycloak_admin_password: str = field(default="", repr=False)
    github_api_url: str = "https://api.github.com"
    github_app_id: str = ""
    github_app_key_file: str = "/etc/fntc/github/key.pem"
    github_idp_alias: str = "github"

    #: Names this cluster in the marker put on every FN task.
    cluster_name: str = "default"
    #: Namespaces the poller watches; empty means all.
    namespaces: tuple[str, ...] = ()
    #: When set, only images from these registries are admitted.
    allowed_registries: tuple[str, ...] = ()
    #: When set, only these users (userInfo.username) or groups may create Tasks.
    allowed_requesters: tuple[str, ...] = ()
    results_branch_prefix: str = "fntc/results/"

    #: Seconds one admission may spend on outside calls; keep it below the
    #: webhook configuration's timeoutSeconds.
    admission_budget: float = 7.0
    request_timeout: float = 30.0
    results_timeout: float = 90.0
    #: A Task in one phase longer than this gets a Stuck condition.
    stuck_after: float = 6 * 3600.0
    #: FN tasks with a marker but no Task are cancelled only when older than this.
    orphan_grace: float = 300.0
    #: The orphan sweep looks only at FN tasks created within this many seconds.
    orphan_lookback: float = 3 * 86400.0
    submit_backoff_base: float = 30.0
    submit_backoff_cap: float = 1800.0
    concurrency: int = 4
    lease_namespace: str = "fntc-system"
    lease_duration: float = 600.0
    log_format: str = "text"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        defaults = cls()

        def text(name: str, default: str) -> str:
            return env.get(PREFIX + name) or default

        settings = cls(
            fn_url=text("FN_URL", defaults.fn_url).rstrip("/"),
            keycloak_url=text("KEYCLOAK_URL", defaults.keycloak_url).rstrip("/"),
            keycloak_realm=text("KEYCLOAK_REALM", defaults.keycloak_realm),
            keycloak_client_id=text("KEYCLOAK_CLIENT_ID", defaults.keycloak_client_id),
            keycloak_client_secret=_read_secret(env, "KEYCLOAK_CLIENT_SECRET"),
            keycloak_admin_username=text("KEYCLOAK_ADMIN_USERNAME", ""),
            keycloak_admin_password=_read_secret(env, "KEYCLOAK_ADMIN_PASSWORD"),
            github_api_url=text("GITHUB_API_URL", defaults.github_api_url).rstrip("/"),
            github_app_id=text("GITHUB_APP_ID", ""),
            github_app_key_file=text("GITHUB_APP_KEY_FILE", defaults.github_app_key_file),
            github_idp_alias=text("GITHUB_IDP_ALIAS", defaults.github_idp_alias),
            cluster_name=text("CLUSTER_NAME", defaults.cluster_name),
            namespaces=_split(env.get(PREFIX + "NAMESPACES", "")),
            allowed_registries=_split(env.get(PREFIX + "ALLOWED_REGISTRIES", "")),
            allowed_requesters=_split(env.get(PREFIX + "ALLOWED_REQUESTERS", "")),
            results_branch_prefix=text("RESULTS_BRANCH_PREFIX", defaults.results_branch_prefix),
            admission_budget=_number(env, "ADMISSION_BUDGET", defaults.admission_budget),
            request_timeout=_number(env, "REQUEST_TIMEOUT", defaults.request_timeout),
            results_timeout=_number(env, "RESULTS_TIMEOUT", defaults.results_timeout),
            stuck_after=_number(env, "STUCK_AFTER", defaults.stuck_after),
            orphan_grace=_number(env, "ORPHAN_GRACE", defaults.orphan_grace),
            orphan_lookback=_number(env, "ORPHAN_LOOKBACK", defaults.orphan_lookback),
            submit_backoff_base=_number(env, "SUBMIT_BACKOFF_BASE",
                                        defaults.submit_backoff_base),
            submit_backoff_cap=_number(env, "SUBMIT_BACKOFF_CAP", defaults.submit_backoff_cap),
            concurrency=int(_number(env, "CONCURRENCY", defaults.concurrency)) or 1,
            lease_namespace=text("LEASE_NAMESPACE", defaults.lease_namespace),
            lease_duration=_number(env, "LEASE_DURATION", defaults.lease_duration),
            log_format=text("LOG_FORMAT", defaults.log_format),
        )
        if settings.log_format not in ("text", "json"):
            raise SettingsError(f"{PREFIX}LOG_FORMAT must be text or json, "
                                f"not {settings.log_format!r}")
        return settings

    def require_keycloak(self) -> None:
        """Fail early, naming the variables, when Keycloak cannot be used."""
        missing = [name for name, value in (
            ("KEYCLOAK_CLIENT_SECRET", self.keycloak_client_secret),
            ("KEYCLOAK_ADMIN_USERNAME", self.keycloak_admin_username),
            ("KEYCLOAK_ADMIN_PASSWORD", self.keycloak_admin_password),
        ) if not value]
        if missing:
            raise SettingsError("missing configuration: "
                                + ", ".join(PREFIX + name for name in missing))
