"""A coordination.k8s.io Lease, so two poller runs never work at the same time.

A manual run during the CronJob's run finds the Lease held and leaves at
once. A run that died keeps the Lease only until it expires; a run that
lasts renews it (:meth:`Lease.kept`), so a long run is never taken for a
dead one.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Iterator

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from taskcore.errors import ServiceError

log = logging.getLogger(__name__)

LEASE_NAME = "fntc-poller"


class LeaseError(ServiceError):
    service = "kubernetes"


class Lease:
    def __init__(self, api_client: client.ApiClient, namespace: str, *,
                 duration: float, identity: str | None = None) -> None:
        self._api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.duration = int(max(duration, 1))
        self.identity = identity or \
            f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.held = False

    def _spec(self, now: datetime, holder: str | None) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=self.duration,
                                  acquire_time=now, renew_time=now)

    def acquire(self) -> bool:
        """True when this run holds the Lease now; False when another live run does."""
        now = datetime.now(timezone.utc)
        try:
            lease = self._api.read_namespaced_lease(LEASE_NAME, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise LeaseError(f"reading Lease {self.namespace}/{LEASE_NAME} failed "
                                 f"({error.status})", status=error.status,
                                 transient=True) from error
            body = client.V1Lease(metadata=client.V1ObjectMeta(name=LEASE_NAME),
                                  spec=self._spec(now, self.identity))
            try:
                self._api.create_namespaced_lease(self.namespace, body)
            except ApiException as create_error:
                if create_error.status == 409:
                    return False
                raise LeaseError(f"creating Lease {self.namespace}/{LEASE_NAME} failed "
                                 f"({create_error.status}); does namespace "
                                 f"{self.namespace} exist?", status=create_error.status
                                 ) from create_error
            self.held = True
            return True

        spec = lease.spec
        if spec.holder_identity and spec.holder_identity != self.identity and spec.renew_time:
            expires = spec.renew_time + timedelta(seconds=spec.lease_duration_seconds or 0)
            if expires > now:
                log.info("another poller run holds the lease",
                         extra={"holder": spec.holder_identity,
                                "expires": expires.isoformat(timespec="seconds")})
                return False
        lease.spec = self._spec(now, self.identity)
        try:
            # The read's resourceVersion makes this a compare-and-swap: of two
            # runs taking an expired Lease at once, one gets 409 and leaves.
            self._api.replace_namespaced_lease(LEASE_NAME, self.namespace, lease)
        except ApiException as error:
            if error.status == 409:
                return False
            raise LeaseError(f"taking Lease {self.namespace}/{LEASE_NAME} failed "
                             f"({error.status})", status=error.status) from error
        self.held = True
        return True

    def renew(self) -> bool:
        """Move the renew time on; False when the Lease is no longer ours."""
        if not self.held:
            return False
        try:
            lease = self._api.read_namespaced_lease(LEASE_NAME, self.namespace)
            if lease.spec.holder_identity != self.identity:
                self.held = False
                return False
            lease.spec.renew_time = datetime.now(timezone.utc)
            self._api.replace_namespaced_lease(LEASE_NAME, self.namespace, lease)
        except ApiException as error:
            # A 409 means someone wrote the Lease since our read: it is not ours
            # to assume any more; other errors may pass before the Lease expires.
            if error.status == 409:
                self.held = False
            log.warning("could not renew the lease (%s)", error.status)
            return self.held
        return True

    @contextmanager
    def kept(self) -> Iterator["Lease"]:
        """Renew the Lease in the background, every third of its duration, for as
        long as the ``with`` block runs; releasing it stays the caller's job."""
        stop = threading.Event()

        def renew_until_stopped() -> None:
            while not stop.wait(self.duration / 3):
                if not self.renew():
                    log.warning("lost the lease; status writes stay guarded by "
                                "resourceVersion preconditions")
                    return

        keeper = threading.Thread(target=renew_until_stopped, name="lease", daemon=True)
        keeper.start()
        try:
            yield self
        finally:
            stop.set()
            keeper.join(timeout=5)

    def release(self) -> None:
        if not self.held:
            return
        try:
            lease = self._api.read_namespaced_lease(LEASE_NAME, self.namespace)
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self._api.replace_namespaced_lease(LEASE_NAME, self.namespace, lease)
        except ApiException as error:
            log.warning("could not release the lease (%s); it expires by itself",
                        error.status)
        self.held = False
