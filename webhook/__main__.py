"""``python -m webhook``: serve the admission webhook over TLS."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Mapping

import uvicorn

from taskcore import logs
from taskcore.kube import TaskStore, load_api_client
from taskcore.settings import Settings, SettingsError

from .admission import Admission
from .app import create_app, create_probe_app
from .tls import ReloadingContext

log = logging.getLogger("webhook")

USAGE = """\
usage: python -m webhook

Serves FNTC's admission webhook: AdmissionReviews on /mutate and /validate over
HTTPS, /healthz, /readyz and /metrics on both ports. Configuration comes from the
environment: the FNTC_* settings shared with the poller (Keycloak, the FN,
FNTC_ADMISSION_BUDGET, ...; see README.md), and these of the webhook alone:

  FNTC_WEBHOOK_CERT_FILE       serving certificate (default /etc/fntc/tls/tls.crt)
  FNTC_WEBHOOK_KEY_FILE        its private key (default /etc/fntc/tls/tls.key)
  FNTC_WEBHOOK_CLIENT_CA_FILE  when set, every caller must present a client
                               certificate signed by this CA (the API server
                               does once its AdmissionConfiguration gives it one)
  FNTC_WEBHOOK_HOST            address to listen on (default 0.0.0.0)
  FNTC_WEBHOOK_PORT            HTTPS port (default 8443)
  FNTC_WEBHOOK_HEALTH_PORT     plain-HTTP port for the probes and metrics, which
                               need no client certificate (default 8081; 0: none)

Certificate, key and client CA files are read again when they change.
"""


class ServingError(ValueError):
    """A FNTC_WEBHOOK_* variable cannot work; the message names it."""


@dataclass(frozen=True)
class Serving:
    """Where and how the webhook listens, from the FNTC_WEBHOOK_* variables."""

    cert_file: str
    key_file: str
    client_ca_file: str
    host: str
    port: int
    health_port: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Serving":
        def port(name: str, default: str) -> int:
            raw = env.get(name) or default
            if not raw.isdigit() or int(raw) > 65535:
                raise ServingError(f"{name} must be a port number, not {raw!r}")
            return int(raw)

        return cls(cert_file=env.get("FNTC_WEBHOOK_CERT_FILE", "/etc/fntc/tls/tls.crt"),
                   key_file=env.get("FNTC_WEBHOOK_KEY_FILE", "/etc/fntc/tls/tls.key"),
                   client_ca_file=env.get("FNTC_WEBHOOK_CLIENT_CA_FILE", ""),
                   host=env.get("FNTC_WEBHOOK_HOST", "0.0.0.0"),
                   port=port("FNTC_WEBHOOK_PORT", "8443"),
                   health_port=port("FNTC_WEBHOOK_HEALTH_PORT", "8081"))


def _serve_probes(app: object, host: str, port: int) -> str | None:
    """Start the plain-HTTP probe server in a thread; the reason it failed, or None."""
    config = uvicorn.Config(create_probe_app(app), host=host, port=port,  # type: ignore
                            log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="probes", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            return f"the probe port {host}:{port} could not be opened"
        time.sleep(0.02)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        wanted = argv[0] in ("-h", "--help")
        print(USAGE, end="", file=sys.stdout if wanted else sys.stderr)
        return 0 if wanted else 2
    try:
        settings = Settings.from_env()
        settings.require_keycloak()
        serving = Serving.from_env(os.environ)
    except (SettingsError, ServingError) as error:
        print(f"webhook: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format)
    try:
        tls = ReloadingContext(serving.cert_file, serving.key_file,
                               client_ca_file=serving.client_ca_file)
    except (OSError, ValueError) as error:
        files = f"{serving.cert_file}, {serving.key_file}"
        if serving.client_ca_file:
            files += f" and the client CA {serving.client_ca_file}"
        print(f"webhook: cannot load the TLS files {files}: {error}", file=sys.stderr)
        return 2
    tls.watch()

    app = create_app(lambda: Admission.from_settings(
        settings, TaskStore(load_api_client(os.environ.get("KUBECONFIG")))))
    if serving.health_port:
        failed = _serve_probes(app, serving.host, serving.health_port)
        if failed:
            print(f"webhook: {failed}", file=sys.stderr)
            return 2
    config = uvicorn.Config(app, host=serving.host, port=serving.port, log_config=None,
                            access_log=False, ssl_certfile=serving.cert_file,
                            ssl_keyfile=serving.key_file)
    config.load()
    config.ssl = tls.context     # serve with the context that follows the files
    log.info("webhook listening", extra={"host": serving.host, "port": serving.port,
                                         "health_port": serving.health_port,
                                         "client_certificates": bool(serving.client_ca_file)})
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
