"""A TLS context whose certificate follows the files on disk, and that can require
callers to present a client certificate.

cert-manager (or an admin) replaces the certificate and key files before
they expire; new connections must use the new pair without a restart.
Loading a chain into the live context affects every later handshake.

With a client CA, every handshake needs a client certificate signed by it:
that is how the webhook knows its caller is the API server, since anything
that can reach the Service could otherwise post an AdmissionReview.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading

log = logging.getLogger(__name__)


class ReloadingContext:
    def __init__(self, cert_file: str, key_file: str, *, client_ca_file: str | None = None,
                 interval: float = 10.0) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self.client_ca_file = client_ca_file or None
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._interval = interval
        self._stamp = self._stamp_now()
        self.context.load_cert_chain(cert_file, key_file)
        if self.client_ca_file:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(cafile=self.client_ca_file)
        self._stop = threading.Event()

    def _stamp_now(self) -> tuple[float, ...]:
        paths = [self.cert_file, self.key_file]
        if self.client_ca_file:
            paths.append(self.client_ca_file)
        return tuple(os.stat(path).st_mtime for path in paths)

    def reload_if_changed(self) -> bool:
        try:
            stamp = self._stamp_now()
            if stamp == self._stamp:
                return False
            # Try the pair on a scratch context first: a certificate that does not
            # match the key (one file rotated, the other not yet) would otherwise
            # leave the live context without a usable key.
            scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            scratch.load_cert_chain(self.cert_file, self.key_file)
            if self.client_ca_file:
                scratch.load_verify_locations(cafile=self.client_ca_file)
            self.context.load_cert_chain(self.cert_file, self.key_file)
            if self.client_ca_file:
                # NB: OpenSSL only adds to a context's trust store, so a CA dropped
                # from the file stays trusted until the webhook restarts.
                self.context.load_verify_locations(cafile=self.client_ca_file)
        except (OSError, ssl.SSLError) as error:
            # Half-written files during a rotation: keep serving the old pair.
            log.warning("TLS certificate not reloaded yet: %s", error)
            return False
        self._stamp = stamp
        log.info("TLS certificate reloaded", extra={"cert_file": self.cert_file})
        return True

    def watch(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self._interval):
                self.reload_if_changed()
        threading.Thread(target=loop, name="tls-reload", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
