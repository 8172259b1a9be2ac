"""Files that tell clients of the local control plane how to reach it.

The admin kubeconfig (for kubectl and the official client) and the
AdmissionConfiguration whose kubeconfig gives kube-apiserver a client
certificate to show admission webhooks. Both embed their certificates, so
they stay valid wherever they are copied.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml

from controlplane import pki


def _data(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_admin_kubeconfig(target: Path, *, pki_dir: Path, server_url: str,
                           context: str) -> None:
    """An admin kubeconfig, readable by its owner only."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": context, "cluster": {
            "server": server_url, "certificate-authority-data": _data(pki_dir / "ca.crt")}}],
        "users": [{"name": pki.ADMIN_USER, "user": {
            "client-certificate-data": _data(pki_dir / "admin.crt"),
            "client-key-data": _data(pki_dir / "admin.key")}}],
        "contexts": [{"name": context, "context": {
            "cluster": context, "user": pki.ADMIN_USER, "namespace": "default"}}],
    }
    target.touch(mode=0o600, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False))


def write_admission_config(pki_dir: Path) -> Path:
    """``admission.json`` for ``--admission-control-config-file``: both webhook
    plugins present ``webhook-client.crt`` to every webhook (user ``*``)."""
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config",
        "users": [{"name": "*", "user": {
            "client-certificate-data": _data(pki_dir / "webhook-client.crt"),
            "client-key-data": _data(pki_dir / "webhook-client.key")}}],
    }
    (pki_dir / "webhook-client.kubeconfig").write_text(json.dumps(kubeconfig))
    plugin = {"apiVersion": "apiserver.config.k8s.io/v1",
              "kind": "WebhookAdmissionConfiguration",
              "kubeConfigFile": str(pki_dir / "webhook-client.kubeconfig")}
    config = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "AdmissionConfiguration",
              "plugins": [{"name": name, "configuration": plugin} for name in
                          ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")]}
    target = pki_dir / "admission.json"
    target.write_text(json.dumps(config))
    return target
