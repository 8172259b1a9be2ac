"""The session's API server behaves like a cluster's: storage, RBAC, dry runs, webhooks."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import re
import ssl
import threading
from collections.abc import Iterator

import kubernetes
import pytest

from controlplane import pki
from controlplane.cluster import ControlPlane, KubectlError

CONFIG_MAP = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: {namespace}
data:
  greeting: hello
"""


def test_namespace_fixture_gives_an_empty_namespace_named_after_the_test(
    namespace: str, kube_api: kubernetes.client.ApiClient
) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)

    assert namespace.startswith("test-namespace-fixture-gives")
    status = core.read_namespace(namespace).status
    assert status is not None and status.phase == "Active"
    assert core.list_namespaced_config_map(namespace).items == []


def test_config_map_is_stored_and_read_back(
    namespace: str, kube_api: kubernetes.client.ApiClient
) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, kubernetes.client.V1ConfigMap(
        metadata=kubernetes.client.V1ObjectMeta(name="settings"), data={"greeting": "hello"}))

    stored = core.read_namespaced_config_map("settings", namespace)
    assert stored.data == {"greeting": "hello"}
    # The uid is assigned by the server, so the object really went through etcd.
    assert stored.metadata is not None and stored.metadata.uid


def test_rbac_denies_an_unbound_service_account_until_a_role_is_bound(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("create", "serviceaccount", "poller", "-n", namespace)
    account = f"system:serviceaccount:{namespace}:poller"
    can_create = ("auth", "can-i", "create", "configmaps", "-n", namespace)

    denied = control_plane.kubectl(*can_create, "--as", account, check=False)
    assert (denied.returncode, denied.stdout.strip()) == (1, "no")
    assert control_plane.kubectl(*can_create).stdout.strip() == "yes"  # the admin may

    control_plane.kubectl("create", "role", "writer", "--verb=create",
                          "--resource=configmaps", "-n", namespace)
    control_plane.kubectl("create", "rolebinding", "writer", "--role=writer",
                          f"--serviceaccount={namespace}:poller", "-n", namespace)
    allowed = control_plane.kubectl(*can_create, as_user=account, check=False)
    assert (allowed.returncode, allowed.stdout.strip()) == (0, "yes")


def test_server_side_dry_run_validates_without_storing(
    control_plane: ControlPlane, namespace: str
) -> None:
    manifest = CONFIG_MAP.format(name="dry", namespace=namespace)
    result = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)
    assert "(server dry run)" in result.stdout

    missing = control_plane.kubectl("get", "configmap", "dry", "-n", namespace, check=False)
    assert missing.returncode == 1 and "NotFound" in missing.stderr

    invalid = CONFIG_MAP.format(name="Not_A_DNS_Name", namespace=namespace)
    with pytest.raises(KubectlError, match="Invalid value") as failure:
        control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=invalid)
    assert failure.value.returncode == 1


def test_kubectl_and_server_share_a_minor_version(control_plane: ControlPlane) -> None:
    versions = json.loads(control_plane.kubectl("version", "-o", "json").stdout)

    def minor(info: dict[str, str]) -> str:
        found = re.match(r"v(\d+\.\d+)\.", info["gitVersion"])
        assert found, f"unparsable version {info['gitVersion']!r}"
        return found.group(1)

    client, server = minor(versions["clientVersion"]), minor(versions["serverVersion"])
    assert client == server and client != "0.0"


def test_api_server_certificate_verifies_against_the_published_ca(
    control_plane: ControlPlane,
) -> None:
    context = ssl.create_default_context(cadata=control_plane.ca_pem.decode())
    port = int(control_plane.server_url.rsplit(":", 1)[1])
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    connection.request("GET", "/readyz")  # allowed without credentials
    assert connection.getresponse().read() == b"ok"
    connection.close()

    stranger = pki.CertificateAuthority.create("someone-else")
    context = ssl.create_default_context(cadata=stranger.cert_pem.decode())
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        connection.request("GET", "/readyz")


def test_service_account_token_authenticates_as_that_account(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    token = control_plane.kubectl("create", "token", "reader", "-n", namespace).stdout.strip()

    context = ssl.create_default_context(cadata=control_plane.ca_pem.decode())
    port = int(control_plane.server_url.rsplit(":", 1)[1])
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    connection.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                       body=json.dumps(review),
                       headers={"Authorization": f"Bearer {token}",
                                "Content-Type": "application/json"})
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()

    assert response.status == 201
    assert body["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:reader"


class _DenyingWebhook(http.server.BaseHTTPRequestHandler):
    """Refuses every admission request with a recognisable message."""

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "response": {"uid": review["request"]["uid"], "allowed": False,
                               "status": {"code": 403, "message": "refused by test webhook"}}}
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def denying_webhook(control_plane: ControlPlane) -> Iterator[int]:
    """A webhook over TLS with a serving certificate from the control plane's CA."""
    cert_path, key_path = control_plane.serving_certificate()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DenyingWebhook)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_admission_webhook_is_called_over_tls_with_the_ca_bundle(
    control_plane: ControlPlane, namespace: str, denying_webhook: int
) -> None:
    name = f"deny-{namespace}"
    assert base64.b64decode(control_plane.ca_bundle_b64) == control_plane.ca_pem
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "deny.fntc.test", "admissionReviewVersions": ["v1"],
            "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 5,
            "clientConfig": {"url": f"https://127.0.0.1:{denying_webhook}/validate",
                             "caBundle": control_plane.ca_bundle_b64},
            # Only this test's namespace, so other tests never meet this webhook.
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["configmaps"]}],
        }],
    }
    control_plane.kubectl("create", "-f", "-", input=json.dumps(configuration))
    try:
        manifest = CONFIG_MAP.format(name="blocked", namespace=namespace)
        with pytest.raises(KubectlError, match="refused by test webhook"):
            control_plane.kubectl("apply", "-f", "-", input=manifest)
    finally:
        control_plane.kubectl("delete", "validatingwebhookconfiguration", name)
