"""A TLS context whose certificate follows the files on disk.

cert-manager (or an admin) replaces the certificate and key files before
they expire; new connections must use the new pair without a restart.
Loading a chain into the live context affects every later handshake.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading

log = logging.getLogger(__name__)


class ReloadingContext:
    def __init__(self, cert_file: str, key_file: str, *, interval: float = 10.0) -> None:
        self.cert_file, self.key_file = cert_file, key_file
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._interval = interval
        self._stamp = self._stamp_now()
        self.context.load_cert_chain(cert_file, key_file)
        self._stop = threading.Event()

    def _stamp_now(self) -> tuple[float, float]:
        return (os.stat(self.cert_file).st_mtime, os.stat(self.key_file).st_mtime)

    def reload_if_changed(self) -> bool:
        try:
            stamp = self._stamp_now()
            if stamp == self._stamp:
                return False
            # Try the pair on a scratch context first: a certificate that does not
            # match the key (one file rotated, the other not yet) would otherwise
            # leave the live context without a usable key.
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.cert_file,
                                                                     self.key_file)
            self.context.load_cert_chain(self.cert_file, self.key_file)
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
