"""A local control plane with FNTC installed: CRD, webhook process, webhook
configurations, all pointed at the stand-ins.

The webhook runs as its own process over TLS, exactly as in a cluster, and
the API server reaches it by URL with the CA bundle that signed its
certificate. The webhook in turn requires the client certificate the API
server presents to webhooks, so nothing else can post it a review. The
poller is run the way the CronJob runs it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from controlplane.cluster import ControlPlane
from standins.sandbox import Sandbox

from .webhooks import configurations

ROOT = Path(__file__).resolve().parent.parent
CRD = ROOT / "k8s" / "crd.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebhookProcess:
    """``python -m webhook`` with a certificate from the control plane's CA, taking
    reviews only from callers with a certificate of the API server's webhook client CA."""

    def __init__(self, plane: ControlPlane, env: dict[str, str], log_path: Path) -> None:
        self.plane = plane
        self.port = _free_port()
        self.health_port = _free_port()
        self.cert, self.key = plane.serving_certificate(["127.0.0.1", "localhost"])
        self.env = {**os.environ, **env, "KUBECONFIG": str(plane.kubeconfig),
                    "FNTC_WEBHOOK_CERT_FILE": str(self.cert),
                    "FNTC_WEBHOOK_KEY_FILE": str(self.key),
                    "FNTC_WEBHOOK_CLIENT_CA_FILE": str(plane.webhook_client_ca_path),
                    "FNTC_WEBHOOK_HOST": "127.0.0.1", "FNTC_WEBHOOK_PORT": str(self.port),
                    "FNTC_WEBHOOK_HEALTH_PORT": str(self.health_port),
                    "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def health_url(self) -> str:
        """The plain-HTTP probe port: the HTTPS one wants the API server's certificate."""
        return f"http://127.0.0.1:{self.health_port}"

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "webhook"], cwd=ROOT,
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT)
        # Straight to loopback, whatever proxy the environment names.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the webhook exited at start; see {self.log_path}:\n"
                                   + self.log_path.read_text()[-2000:])
            try:
                with opener.open(self.health_url + "/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the webhook did not become ready; see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class LocalStack:
    """The control plane, the stand-ins and FNTC's webhook, wired together."""

    def __init__(self, plane: ControlPlane, sandbox: Sandbox, *,
                 settings: dict[str, str] | None = None) -> None:
        self.plane = plane
        self.sandbox = sandbox
        self.settings = {"FNTC_CLUSTER_NAME": "local", "FNTC_LOG_FORMAT": "text",
                         **(settings or {})}
        self.webhook: WebhookProcess | None = None

    def env(self) -> dict[str, str]:
        """Settings for FNTC's processes: the stand-ins' addresses plus ours."""
        return {**self.sandbox.env(), **self.settings, "KUBECONFIG": str(self.plane.kubeconfig)}

    def install(self) -> None:
        """Apply the CRD, start the webhook and register it; returns when Tasks can be made."""
        self.plane.kubectl("apply", "-f", str(CRD))
        self.plane.kubectl("apply", "-f", str(ROOT / "k8s" / "namespace.yaml"))
        self.plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                           "crd/tasks.tasks.federatednode.com")
        self.webhook = WebhookProcess(self.plane, self.env(),
                                      self.plane.work_dir / "webhook.log")
        self.webhook.start()
        documents = configurations({"url": self.webhook.url,
                                    "caBundle": self.plane.ca_bundle_b64})
        self.plane.kubectl("apply", "-f", "-",
                           input="\n---\n".join(json.dumps(doc) for doc in documents))
        self._wait_for_admission()

    def _wait_for_admission(self, timeout: float = 30.0) -> None:
        """The API server picks up webhook configurations a moment after they are
        written; a server-side dry run of an invalid Task tells when it has."""
        probe = {"apiVersion": "tasks.federatednode.com/v1", "kind": "Task",
                 "metadata": {"name": "admission-probe", "namespace": "default"},
                 "spec": {"image": "x", "user": {"email": "nobody@example.org"},
                          "project": "p", "dataset": 1, "repository": "o/r"}}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.plane.kubectl("apply", "--dry-run=server", "-f", "-",
                                        input=json.dumps(probe), check=False)
            if result.returncode != 0 and "Task refused" in result.stderr:
                return
            time.sleep(0.2)
        raise RuntimeError("the API server did not start calling the webhook")

    def stop(self) -> None:
        if self.webhook:
            self.webhook.stop()

    def poller(self, extra: dict[str, str] | None = None, *,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """One poller run, as the CronJob starts it."""
        env = {**os.environ, **self.env(), **(extra or {})}
        return subprocess.run([sys.executable, "-m", "poller"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)

    def apply(self, manifest: dict[str, Any] | str, *, check: bool = False,
              args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self.plane.kubectl("apply", *args, "-f", "-", input=text, check=check)
