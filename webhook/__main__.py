"""``python -m webhook``: serve the admission webhook over TLS."""

from __future__ import annotations

import logging
import os
import sys

import uvicorn

from taskcore import logs
from taskcore.kube import TaskStore, load_api_client
from taskcore.settings import Settings, SettingsError

from .admission import Admission
from .app import create_app
from .tls import ReloadingContext

log = logging.getLogger("webhook")


def main() -> int:
    try:
        settings = Settings.from_env()
        settings.require_keycloak()
    except SettingsError as error:
        print(f"webhook: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format)
    cert = os.environ.get("FNTC_WEBHOOK_CERT_FILE", "/etc/fntc/tls/tls.crt")
    key = os.environ.get("FNTC_WEBHOOK_KEY_FILE", "/etc/fntc/tls/tls.key")
    host = os.environ.get("FNTC_WEBHOOK_HOST", "0.0.0.0")
    port = int(os.environ.get("FNTC_WEBHOOK_PORT", "8443"))
    try:
        tls = ReloadingContext(cert, key)
    except (OSError, ValueError) as error:
        print(f"webhook: cannot load the TLS certificate {cert} and key {key}: {error}",
              file=sys.stderr)
        return 2
    tls.watch()

    app = create_app(lambda: Admission.from_settings(
        settings, TaskStore(load_api_client(os.environ.get("KUBECONFIG")))))
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            ssl_certfile=cert, ssl_keyfile=key)
    config.load()
    config.ssl = tls.context     # serve with the context that follows the files
    log.info("webhook listening", extra={"host": host, "port": port})
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
