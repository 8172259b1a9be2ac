"""A real kube-apiserver backed by etcd, on loopback, for tests and the demo.

Manifests, RBAC rules and admission webhooks are only worth testing against
the real API server: its validation, defaulting, dry runs and authorizer
are what a cluster will apply. This module runs just etcd and
kube-apiserver, which is all of that; there is no controller-manager,
scheduler or kubelet, so namespaces never finish deleting and no Pod runs.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import http.client
import itertools
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, cast

import kubernetes

from controlplane import client_files, pki
from controlplane.binaries import ensure_binaries

START_TIMEOUT_SECONDS = 90.0
STOP_GRACE_SECONDS = 10.0
LOG_TAIL_LINES = 30
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTEXT_NAME = "fntc-local"

#: Proxy settings are dropped from the children's environment: everything
#: they talk to is on loopback, and nothing should leave the machine.
_PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


#: Who the API server is when it calls admission webhooks.
WEBHOOK_CLIENT_USER = "kube-apiserver-webhook-client"


class ControlPlaneError(RuntimeError):
    """The control plane could not be started, or was used before it started."""


class KubectlError(subprocess.CalledProcessError):
    """kubectl exited non-zero; the message carries what it printed on stderr."""

    def __str__(self) -> str:
        command = " ".join(self.cmd[3:])  # without the binary, kubeconfig and cache flags
        return f"kubectl {command} exited {self.returncode}: {(self.stderr or '').strip()}"


@dataclass
class _Child:
    """One server process and the log file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]


class ControlPlane:
    """etcd plus kube-apiserver on free loopback ports, with an admin kubeconfig.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Without
    ``work_dir`` a temporary folder is made and removed on stop (unless
    ``keep_work_dir``); a given ``work_dir`` belongs to the caller and stays.

    NB: on Linux the servers are killed when the thread that started them
    ends, so a crashed test run leaves nothing behind; start from a thread
    that lives as long as the control plane should.
    """

    def __init__(self, *, binaries: Path | None = None, work_dir: Path | None = None,
                 keep_work_dir: bool = False,
                 start_timeout: float = START_TIMEOUT_SECONDS) -> None:
        self.binaries = binaries
        self._given_work_dir = work_dir
        self._keep_work_dir = keep_work_dir or work_dir is not None
        self._start_timeout = start_timeout
        self._children: list[_Child] = []
        self._admin_client: kubernetes.client.ApiClient | None = None
        self._serving_counter = itertools.count(1)
        self._server_port: int | None = None
        self.startup_seconds: float | None = None

    # -- lifecycle -------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Start etcd and kube-apiserver and return once the API serves requests."""
        started = time.monotonic()
        if self.binaries is None:
            self.binaries = ensure_binaries()
        self.work_dir = self._given_work_dir or Path(tempfile.mkdtemp(prefix="fntc-cp-"))
        (self.work_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._write_pki()
        atexit.register(self.stop)

        # A port picked as free can be taken before the server binds it, and
        # a busy machine can make a first start stall; one retry with fresh
        # ports covers both without hiding a start that is really broken.
        try:
            for attempt in (1, 2):
                try:
                    self._launch(attempt)
                    self._wait_until_ready(time.monotonic() + self._start_timeout)
                    break
                except ControlPlaneError:
                    self._terminate_children()
                    if attempt == 2:
                        self._keep_work_dir = True  # the error points at its logs
                        raise
        except BaseException:
            self.stop()  # also on Ctrl-C: no half-started servers left running
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Stop both servers (API server first, so it can finish with etcd up).

        Safe to call more than once.
        """
        atexit.unregister(self.stop)
        if self._admin_client is not None:
            self._admin_client.close()
            self._admin_client = None
        self._terminate_children()
        work_dir = getattr(self, "work_dir", None)
        if work_dir is not None and not self._keep_work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)

    def is_running(self) -> bool:
        """True while both server processes are alive."""
        return bool(self._children) and all(c.process.poll() is None for c in self._children)

    @property
    def pids(self) -> list[int]:
        """Process ids of the servers, for callers that must check they are gone."""
        return [c.process.pid for c in self._children]

    # -- what callers use ------------------------------------------------

    @property
    def server_url(self) -> str:
        if self._server_port is None:
            raise ControlPlaneError("the control plane has not been started")
        return f"https://127.0.0.1:{self._server_port}"

    @property
    def kubectl_path(self) -> Path:
        assert self.binaries is not None
        return self.binaries / "kubectl"

    @property
    def ca_bundle_b64(self) -> str:
        """The CA in the form webhook configurations expect in ``caBundle``."""
        return base64.b64encode(self.ca_pem).decode()

    def client_environment(self) -> dict[str, str]:
        """Variables that point kubectl and our tools at this control plane."""
        return {"KUBECONFIG": str(self.kubeconfig), "FNTC_KUBECTL": str(self.kubectl_path)}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                as_user: str | None = None,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run our kubectl against this control plane, as the admin or as ``as_user``.

        With ``check`` a non-zero exit raises :class:`KubectlError` showing stderr.
        """
        command = [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}",
                   f"--cache-dir={self.work_dir / 'kubectl-cache'}"]
        if as_user is not None:
            command.append(f"--as={as_user}")
        command += args
        result = subprocess.run(command, input=input, capture_output=True, text=True,
                                env=_child_environment(), timeout=timeout)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, command, result.stdout, result.stderr)
        return result

    def api_client(self) -> kubernetes.client.ApiClient:
        """A new client of the official ``kubernetes`` package, acting as the admin."""
        client = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))
        return cast(kubernetes.client.ApiClient, client)

    def create_namespace(self, name: str) -> str:
        """Create a namespace and return its name."""
        if self._admin_client is None:
            self._admin_client = self.api_client()
        core = kubernetes.client.CoreV1Api(self._admin_client)
        core.create_namespace(kubernetes.client.V1Namespace(
            metadata=kubernetes.client.V1ObjectMeta(name=name)))
        return name

    def serving_certificate(self, hosts: Iterable[str] = ()) -> tuple[Path, Path]:
        """Issue a serving certificate from this cluster's CA; return its file paths.

        The API server trusts it when a webhook configuration carries
        :attr:`ca_bundle_b64`; 127.0.0.1 and localhost are always covered.
        """
        folder = self.work_dir / "serving"
        folder.mkdir(exist_ok=True)
        number = next(self._serving_counter)
        cert_path, key_path = folder / f"{number}.crt", folder / f"{number}.key"
        pki.write_key_pair(cert_path, key_path, pki.issue_serving_certificate(self.ca, hosts))
        return cert_path, key_path

    # -- start-up steps --------------------------------------------------

    def _write_pki(self) -> None:
        folder = self.work_dir / "pki"
        folder.mkdir(exist_ok=True)
        self.ca = pki.CertificateAuthority.create()
        self.ca_pem = self.ca.cert_pem
        self.ca.write(folder / "ca.crt", folder / "ca.key")
        pki.write_key_pair(folder / "apiserver.crt", folder / "apiserver.key",
                           pki.issue_serving_certificate(self.ca, ["kubernetes.default.svc"]))
        pki.write_key_pair(folder / "admin.crt", folder / "admin.key",
                           pki.issue_client_certificate(self.ca))
        private_pem, public_pem = pki.generate_service_account_key_pair()
        pki.write_key_pair(folder / "sa.pub", folder / "sa.key", (public_pem, private_pem))
        # The API server shows this certificate to admission webhooks, so a
        # webhook can refuse callers that are not the API server.
        pki.write_key_pair(folder / "webhook-client.crt", folder / "webhook-client.key",
                           pki.issue_client_certificate(self.ca, WEBHOOK_CLIENT_USER, ()))
        client_files.write_admission_config(folder)
        self._pki = folder
        self.kubeconfig = self.work_dir / "kubeconfig"

    @property
    def webhook_client_ca_path(self) -> Path:
        """The CA that signed the certificate the API server presents to webhooks."""
        return self._pki / "ca.crt"

    def _launch(self, attempt: int) -> None:
        """Start both servers at once: the API server waits for etcd by itself."""
        etcd_port, peer_port, self._server_port = _free_ports(3)
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd_data = self.work_dir / "etcd-data"
        shutil.rmtree(etcd_data, ignore_errors=True)
        self._write_kubeconfig()

        assert self.binaries is not None
        pki_dir = self._pki
        self._spawn(attempt, "etcd", [
            str(self.binaries / "etcd"),
            "--name=default", f"--data-dir={etcd_data}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync", "--log-level=warn",
        ])
        self._spawn(attempt, "kube-apiserver", [
            str(self.binaries / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self._server_port}",
            f"--cert-dir={self.work_dir / 'apiserver-certs'}",
            f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
            f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
            f"--client-ca-file={pki_dir / 'ca.crt'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki_dir / 'sa.pub'}",
            f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
            f"--admission-control-config-file={pki_dir / 'admission.json'}",
            # No controller creates service-account tokens here.
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            # Lean on a small machine: nothing here needs these.
            "--profiling=false",
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
        ])

    def _spawn(self, attempt: int, name: str, command: Sequence[str]) -> None:
        log = (self.work_dir / "logs" / f"{name}.log").open("ab")
        log.write(f"--- attempt {attempt}: {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=_child_environment(), cwd=self.work_dir,
            # Own session: a Ctrl-C in the terminal reaches us, and we stop
            # the servers in order instead of them dying all at once.
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        self._children.append(_Child(name=name, process=process, log=log))

    def _write_kubeconfig(self) -> None:
        client_files.write_admin_kubeconfig(self.kubeconfig, pki_dir=self._pki,
                                            server_url=self.server_url,
                                            context=CONTEXT_NAME)

    def _wait_until_ready(self, deadline: float) -> None:
        """Poll until /readyz is ok and the bootstrap has created ``default``."""
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        context.load_cert_chain(self._pki / "admin.crt", self._pki / "admin.key")
        while True:
            for child in self._children:
                if child.process.poll() is not None:
                    raise self._failure(f"{child.name} exited with {child.process.returncode}")
            if (self._get(context, "/readyz") == 200
                    and self._get(context, "/api/v1/namespaces/default") == 200):
                return
            if time.monotonic() > deadline:
                raise self._failure(f"not ready after {self._start_timeout:.0f}s")
            time.sleep(0.1)

    def _get(self, context: ssl.SSLContext, path: str) -> int | None:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self._server_port, context=context, timeout=5)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            connection.close()

    def _failure(self, reason: str) -> ControlPlaneError:
        logs = self.work_dir / "logs"
        message = f"the control plane did not start: {reason}; logs in {logs}."
        for child in self._children:
            if child.name == "kube-apiserver" or child.process.poll() is not None:
                message += f"\nLast lines of {child.name}.log:\n"
                message += _tail(logs / f"{child.name}.log", LOG_TAIL_LINES)
        return ControlPlaneError(message)

    def _terminate_children(self) -> None:
        # Reversed: the API server was started last and should go first.
        for child in reversed(self._children):
            _terminate(child.process)
            child.log.close()
        self._children = []


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _free_ports(count: int) -> list[int]:
    """Ports the kernel reports free on 127.0.0.1, held open together so they differ."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _child_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARIABLES}


#: Loaded before any fork: loading a library in a freshly forked child can deadlock.
_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to kill this child when the thread that started it ends."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open(errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except OSError as e:
        return f"(cannot read {path}: {e})\n"
