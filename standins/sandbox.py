"""The three stand-ins started together, wired to each other, on loopback.

Tests use :class:`Sandbox` in-process (with a :class:`ManualClock` so FN
tasks move only when a test says so); the demo runs ``python -m standins``,
which keeps one up in its own process on the real clock.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .clock import Clock, SystemClock
from .faults import Faults
from .fn import create_fn_app
from .fn_state import FNState, default_fn_state
from .github import GitHubState, create_github_app, default_github_state
from .keycloak import KeycloakState, create_keycloak_app, default_keycloak_state
from .server import RunningServer, serve_in_thread


class Sandbox:
    """Keycloak, the FN and GitHub stand-ins with the sandbox's seed data.

    ``clock`` drives the FN's tasks (a test advances it to move them along).
    Keycloak and GitHub judge token lifetimes against real time, as the
    product's own clock does: a test moving FN tasks forward by an hour must
    not make every token look expired.
    """

    def __init__(self, *, clock: Clock | None = None, work_dir: Path | None = None) -> None:
        self.clock = clock or SystemClock()
        self.token_clock: Clock = SystemClock()
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="fntc-sandbox-"))
        self.keycloak_faults = Faults()
        self.fn_faults = Faults()
        self.keycloak_state: KeycloakState | None = None
        self.fn_state: FNState | None = None
        self.github_state: GitHubState | None = None
        self.servers: dict[str, RunningServer] = {}

    def start(self, *, ports: dict[str, int] | None = None) -> "Sandbox":
        ports = ports or {}
        self.keycloak_state = default_keycloak_state(self.token_clock)
        self.servers["keycloak"] = serve_in_thread(
            create_keycloak_app(self.keycloak_state, self.keycloak_faults),
            port=ports.get("keycloak", 0))
        self.fn_state = default_fn_state(self.clock, self.servers["keycloak"].url)
        self.servers["fn"] = serve_in_thread(create_fn_app(self.fn_state, self.fn_faults),
                                             port=ports.get("fn", 0))
        self.github_state, private_key = default_github_state(self.token_clock)
        self.servers["github"] = serve_in_thread(create_github_app(self.github_state),
                                                 port=ports.get("github", 0))
        self.github_key_file.write_bytes(private_key)
        self.github_key_file.chmod(0o600)
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def github_key_file(self) -> Path:
        return self.work_dir / "github-app-key.pem"

    @property
    def fn_url(self) -> str:
        return self.servers["fn"].url

    @property
    def keycloak_url(self) -> str:
        return self.servers["keycloak"].url

    @property
    def github_url(self) -> str:
        return self.servers["github"].url

    def env(self) -> dict[str, str]:
        """The FNTC_* settings that point the product at these stand-ins."""
        assert self.keycloak_state and self.github_state, "start the sandbox first"
        return {
            "FNTC_FN_URL": self.fn_url,
            "FNTC_KEYCLOAK_URL": self.keycloak_url,
            "FNTC_KEYCLOAK_CLIENT_SECRET": self.keycloak_state.client_secret,
            "FNTC_KEYCLOAK_ADMIN_USERNAME": self.keycloak_state.admin_username,
            "FNTC_KEYCLOAK_ADMIN_PASSWORD": self.keycloak_state.admin_password,
            "FNTC_GITHUB_API_URL": self.github_url,
            "FNTC_GITHUB_APP_ID": self.github_state.client_id,
            "FNTC_GITHUB_APP_KEY_FILE": str(self.github_key_file),
        }
