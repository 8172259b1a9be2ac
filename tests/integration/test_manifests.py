"""The install manifests in k8s/ and the Dockerfiles, checked against a real API server.

What a cluster would do with ``kubectl apply -f k8s/`` is what the API server
does here: the CRD, the namespace and the RBAC objects are created for real,
everything else goes through a server-side dry run (validation, defaulting,
Pod Security admission) without being stored. The webhook configurations are
only ever dry-run: registered for real they would point the session's API
server at a Service that does not exist and refuse every Task.

cert-manager is not installed here, so its Issuer and Certificate kinds get
stand-in CRDs whose schemas cover the fields these manifests use, with
cert-manager's enums. With strict field validation a misspelt or misplaced
field is refused just as cert-manager's own CRDs would refuse it; a field
cert-manager has but the stand-in lacks must be added to it before use.
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import re
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from controlplane.cluster import ControlPlane
from devenv.webhooks import configurations
from poller.__main__ import build as build_poller
from taskcore.kube import TaskStore
from taskcore.settings import Settings, SettingsError
from webhook.admission import Admission

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
SYSTEM = "fntc-system"
POLLER = f"system:serviceaccount:{SYSTEM}:fntc-poller"
WEBHOOK = f"system:serviceaccount:{SYSTEM}:fntc-webhook"
ALL = "*"  # every namespace

Document = dict[str, Any]


def documents(path: Path) -> list[Document]:
    return copy.deepcopy(_parsed(path))


@functools.cache
def _parsed(path: Path) -> list[Document]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(path.read_text(), Loader=loader) if doc]


def install_documents() -> list[Document]:
    """Every object ``kubectl apply -f k8s/`` creates, CRD included."""
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in documents(path)]


def find(kind: str, name: str) -> Document:
    matches = [doc for doc in install_documents()
               if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name} in k8s/, found {len(matches)}"
    return matches[0]


def pod_specs() -> dict[str, Document]:
    """The pod templates of the two workloads, by container name."""
    webhook = find("Deployment", "fntc-webhook")["spec"]["template"]["spec"]
    poller = find("CronJob", "fntc-poller")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return {"webhook": webhook, "poller": poller}


# -- cert-manager stand-in CRDs ----------------------------------------------------------

_STRING = {"type": "string"}
_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}
_USAGES = ["signing", "digital signature", "content commitment", "key encipherment",
           "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
           "decipher only", "any", "server auth", "client auth", "code signing",
           "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
           "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]
_ISSUER_SPEC = {
    "type": "object", "minProperties": 1, "maxProperties": 1,  # exactly one issuer type
    "properties": {
        "selfSigned": {"type": "object", "properties": {
            "crlDistributionPoints": {"type": "array", "items": _STRING}}},
        "ca": {"type": "object", "required": ["secretName"], "properties": {
            "secretName": _STRING,
            "crlDistributionPoints": {"type": "array", "items": _STRING}}},
    },
}
_CERTIFICATE_SPEC = {
    "type": "object", "required": ["secretName", "issuerRef"],
    "properties": {
        "secretName": _STRING,
        "commonName": {"type": "string", "maxLength": 64},
        "dnsNames": {"type": "array", "items": _STRING},
        "isCA": {"type": "boolean"},
        "duration": _DURATION,
        "renewBefore": _DURATION,
        "usages": {"type": "array", "items": {"type": "string", "enum": _USAGES}},
        "privateKey": {"type": "object", "properties": {
            "algorithm": {"type": "string", "enum": ["RSA", "ECDSA", "Ed25519"]},
            "encoding": {"type": "string", "enum": ["PKCS1", "PKCS8"]},
            "size": {"type": "integer"},
            "rotationPolicy": {"type": "string", "enum": ["Never", "Always"]}}},
        "issuerRef": {"type": "object", "required": ["name"], "properties": {
            "name": _STRING, "kind": _STRING, "group": _STRING}},
    },
}


def cert_manager_crd(kind: str, spec_schema: Document) -> Document:
    plural = kind.lower() + "s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.cert-manager.io"},
        "spec": {"group": "cert-manager.io", "scope": "Namespaced",
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                           "listKind": f"{kind}List"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {
                                   "type": "object", "required": ["spec"],
                                   "properties": {"spec": spec_schema}}}}]},
    }


# -- the installation --------------------------------------------------------------------

def apply(plane: ControlPlane, *objects: Document, args: tuple[str, ...] = ()) -> str:
    text = "\n---\n".join(json.dumps(doc) for doc in objects)
    return plane.kubectl("apply", *args, "-f", "-", input=text).stdout


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane) -> ControlPlane:
    """The session's control plane with the CRD, namespace and RBAC of k8s/ installed."""
    control_plane.kubectl("apply", "-f", str(K8S / "crd.yaml"))
    apply(control_plane, cert_manager_crd("Issuer", _ISSUER_SPEC),
          cert_manager_crd("Certificate", _CERTIFICATE_SPEC))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                          "crd/tasks.tasks.federatednode.com",
                          "crd/issuers.cert-manager.io", "crd/certificates.cert-manager.io")
    control_plane.kubectl("apply", "-f", str(K8S / "namespace.yaml"),
                          "-f", str(K8S / "rbac.yaml"))
    return control_plane


def test_kubectl_apply_of_the_folder_passes_the_api_server(cluster: ControlPlane) -> None:
    result = cluster.kubectl("apply", "--dry-run=server", "--validate=strict",
                             "-f", str(K8S))

    applied = set(re.findall(r"^([\w.-]+)/([\w.-]+) \w+ \(server dry run\)$",
                             result.stdout, re.MULTILINE))
    expected = {(doc["kind"].lower(), doc["metadata"]["name"]) for doc in install_documents()}
    assert {(kind.split(".")[0], name) for kind, name in applied} == expected
    # No Pod Security, deprecation or unknown-field warnings either.
    assert "Warning" not in result.stderr, result.stderr
    # The example Secrets are not part of the folder's apply, but they are valid.
    assert not any(kind == "secret" for kind, _ in applied)
    example = documents(K8S / "secrets.yaml.example")
    assert "(server dry run)" in apply(cluster, *example, args=("--dry-run=server",))


def test_both_pods_meet_the_restricted_pod_security_standard(cluster: ControlPlane) -> None:
    pods = [{"apiVersion": "v1", "kind": "Pod", "spec": spec,
             "metadata": {"name": f"fntc-{name}-check", "namespace": SYSTEM}}
            for name, spec in pod_specs().items()]
    for pod in pods:
        cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod))

    # The namespace really enforces it: the same pod as root is refused.
    root = copy.deepcopy(pods[0])
    root["spec"]["securityContext"].update(runAsNonRoot=False, runAsUser=0)
    refused = cluster.kubectl("create", "--dry-run=server", "-f", "-",
                              input=json.dumps(root), check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr


# -- RBAC --------------------------------------------------------------------------------

_QUALIFIED = {"tasks": "tasks.tasks.federatednode.com", "leases": "leases.coordination.k8s.io"}


def can_i(plane: ControlPlane, who: str, verb: str, resource: str, namespace: str) -> bool:
    """``kubectl auth can-i`` as ``who``; ``resource`` may be tasks/status or leases/<name>."""
    kind, _, rest = resource.partition("/")
    args = ["auth", "can-i", verb]
    if kind == "tasks" and rest:
        args += [_QUALIFIED[kind], f"--subresource={rest}"]
    else:
        args.append(_QUALIFIED.get(kind, kind) + (f"/{rest}" if rest else ""))
    args += ["--all-namespaces"] if namespace == ALL else ["-n", namespace]
    answer = plane.kubectl(*args, as_user=who, check=False).stdout.strip()
    assert answer in ("yes", "no"), answer
    return answer == "yes"


def wrong_answers(plane: ControlPlane,
                  cases: list[tuple[str, bool, str, str, str]]) -> list[str]:
    """Ask every ``(who, allowed, verb, resource, namespace)`` at once; list the
    cases the API server answers otherwise, as sentences."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(
            lambda case: can_i(plane, case[0], *case[2:]), cases))
    return [f"{who.rsplit(':', 1)[-1]} {'cannot' if allowed else 'can'} {verb} {resource} "
            f"in {namespace}" for (who, allowed, verb, resource, namespace), answer
            in zip(cases, answers) if answer is not allowed]


def test_service_accounts_have_exactly_the_verbs_their_code_uses(
        cluster: ControlPlane) -> None:
    cases = [
        (POLLER, True, "list", "tasks", ALL),
        (POLLER, True, "get", "tasks", "research"),
        (POLLER, True, "get", "tasks/status", "research"),
        (POLLER, True, "patch", "tasks/status", "research"),
        (POLLER, True, "create", "events", "research"),
        (POLLER, True, "patch", "events", "research"),
        (POLLER, True, "get", "leases/fntc-poller", SYSTEM),
        (POLLER, True, "update", "leases/fntc-poller", SYSTEM),
        (POLLER, True, "create", "leases", SYSTEM),
        (POLLER, False, "delete", "tasks", "research"),
        (POLLER, False, "create", "tasks", "research"),
        (POLLER, False, "patch", "tasks", "research"),
        (POLLER, False, "update", "tasks/status", "research"),
        (POLLER, False, "update", "leases/someone-else", SYSTEM),
        (POLLER, False, "delete", "leases/fntc-poller", SYSTEM),
        (POLLER, False, "create", "leases", "research"),
        (POLLER, False, "get", "secrets", SYSTEM),
        (WEBHOOK, True, "get", "tasks", "research"),
        (WEBHOOK, True, "get", "tasks/status", "research"),
        (WEBHOOK, True, "patch", "tasks/status", "research"),
        (WEBHOOK, True, "create", "events", "research"),
        (WEBHOOK, False, "list", "tasks", ALL),
        (WEBHOOK, False, "patch", "tasks", "research"),
        (WEBHOOK, False, "delete", "tasks", "research"),
        (WEBHOOK, False, "patch", "events", "research"),
        (WEBHOOK, False, "create", "leases", SYSTEM),
        (WEBHOOK, False, "get", "secrets", SYSTEM),
    ]
    assert wrong_answers(cluster, cases) == []


def effective_rules(name: str, roles: dict[str, Document],
                    seen: frozenset[str] = frozenset()) -> list[Document]:
    """The rules an aggregated ClusterRole ends up with, as a cluster's
    controller-manager fills them in (this control plane runs none)."""
    role = roles[name]
    if not role.get("aggregationRule"):
        return list(role.get("rules") or [])
    rules: list[Document] = []
    for selector in role["aggregationRule"]["clusterRoleSelectors"]:
        wanted = selector["matchLabels"].items()
        for other, candidate in roles.items():
            labels = candidate["metadata"].get("labels") or {}
            if other not in seen | {name} and wanted <= labels.items():
                rules += effective_rules(other, roles, seen | {name})
    return rules


@pytest.fixture
def researchers(cluster: ControlPlane, kube_api: kubernetes.client.ApiClient,
                namespace: str) -> dict[str, str]:
    """Users bound in ``namespace`` to what the built-in view, edit and admin roles
    hold once a cluster has aggregated FNTC's roles into them."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(kube_api)
    listed = kube_api.sanitize_for_serialization(rbac.list_cluster_role())
    roles = {role["metadata"]["name"]: role for role in listed["items"]}
    users = {}
    for builtin in ("view", "edit", "admin"):
        aggregated = f"{builtin}-{namespace}"
        rbac.create_cluster_role({"metadata": {"name": aggregated},
                                  "rules": effective_rules(builtin, roles)})
        users[builtin] = f"{builtin}-user@example.org"
        rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": builtin},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": aggregated},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": users[builtin]}]})
    return users


def test_view_and_edit_users_see_tasks_and_only_fntc_writes_status(
        cluster: ControlPlane, namespace: str, researchers: dict[str, str]) -> None:
    view, edit, admin = researchers["view"], researchers["edit"], researchers["admin"]
    cases = []
    for user in (view, edit, admin):
        cases += [(user, True, verb, "tasks", namespace) for verb in ("get", "list")]
        cases += [(user, user != view, verb, "tasks", namespace)
                  for verb in ("create", "delete", "patch")]
        cases += [(user, False, "patch", "tasks/status", namespace),
                  (user, False, "get", "tasks", SYSTEM)]   # nothing in FNTC's namespace
    # Someone with no role in the namespace gets nothing from FNTC's roles.
    cases.append(("stranger@example.org", False, "list", "tasks", namespace))
    assert wrong_answers(cluster, cases) == []


# -- the webhook configurations, the certificate, the Service ----------------------------

def test_webhook_configurations_are_the_local_stacks_for_the_service() -> None:
    service = find("Service", "fntc-webhook")
    port = service["spec"]["ports"][0]
    expected = configurations({"service": {"namespace": SYSTEM, "name": "fntc-webhook",
                                           "port": port["port"]}})

    for wanted in expected:
        manifest = find(wanted["kind"], wanted["metadata"]["name"])
        assert manifest["webhooks"] == wanted["webhooks"], wanted["kind"]
        # cert-manager's cainjector fills caBundle from the serving Certificate.
        cert_ref = manifest["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        cert_namespace, cert_name = cert_ref.split("/")
        certificate = find("Certificate", cert_name)
        assert certificate["metadata"]["namespace"] == cert_namespace == SYSTEM
        assert f"fntc-webhook.{SYSTEM}.svc" in certificate["spec"]["dnsNames"]

    # The serving Certificate comes from an Issuer backed by a CA Certificate.
    issuer = find("Issuer", certificate["spec"]["issuerRef"]["name"])
    ca = find("Certificate", "fntc-ca")
    assert issuer["spec"]["ca"]["secretName"] == ca["spec"]["secretName"]
    assert ca["spec"]["isCA"] is True
    assert "selfSigned" in find("Issuer", ca["spec"]["issuerRef"]["name"])["spec"]

    # The Service reaches the webhook's HTTPS port; the probes use the plain health
    # port, which answers whether or not client certificates are required on 8443.
    deployment = find("Deployment", "fntc-webhook")
    template = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    container = template["spec"]["containers"][0]
    (https,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    assert https["containerPort"] == 8443
    (health,) = [p for p in container["ports"] if p["name"] == "health"]
    assert health["containerPort"] == 8081
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "health",
                                               "scheme": "HTTP"}
    # The certificate's Secret is mounted whole where the webhook reads it by default.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    tls = volumes[mounts["/etc/fntc/tls"]]["secret"]
    assert tls["secretName"] == certificate["spec"]["secretName"] and "items" not in tls
    main_source = (ROOT / "webhook" / "__main__.py").read_text()
    assert '"/etc/fntc/tls/tls.crt"' in main_source and '"8443"' in main_source
    # Two replicas, and a voluntary disruption never takes both.
    assert deployment["spec"]["replicas"] == 2
    budget = find("PodDisruptionBudget", "fntc-webhook")["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"] == deployment["spec"]["selector"]


# -- settings and secrets ----------------------------------------------------------------

def read_by_settings(name: str) -> bool:
    """Whether Settings.from_env reacts to ``name``: a value changes the settings,
    or is refused with a message naming the variable."""
    try:
        probed = Settings.from_env({name: "7.5"})
    except SettingsError as error:
        return name in str(error)
    return probed != Settings.from_env({})


def variables_set() -> set[str]:
    names = set(find("ConfigMap", "fntc-settings")["data"])
    for spec in pod_specs().values():
        for container in spec["containers"]:
            names |= {var["name"] for var in container.get("env", [])}
    return names


def test_every_variable_the_manifests_set_is_a_setting() -> None:
    names = variables_set()
    assert names and all(name.startswith("FNTC_") for name in names), names
    assert [name for name in sorted(names) if not read_by_settings(name)] == []
    assert not read_by_settings("FNTC_NO_SUCH_SETTING")  # the probe can tell


def mounted_secret_key(spec: Document, container: Document, path: str) -> tuple[str, str]:
    """The Secret and key a file path inside a container comes from."""
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            secret = volumes[mount["name"]]["secret"]
            relative = path[len(prefix):]
            items = {item["path"]: item["key"] for item in secret.get("items", [])}
            key = items.get(relative) if items else relative
            assert key is not None, f"{path} is not among the mounted keys"
            return secret["secretName"], key
    raise AssertionError(f"{path} is in no volume mounted into {container['name']}")


def resolved_environment(name: str, secrets: dict[str, dict[str, str]],
                         files: Path) -> tuple[dict[str, str], set[str]]:
    """The environment a workload's container starts with, its secret files written
    under ``files``, and the Secret keys (``secret/key``) it took them from."""
    spec = pod_specs()[name]
    (container,) = spec["containers"]
    config_maps = {"fntc-settings": find("ConfigMap", "fntc-settings")["data"]}
    env: dict[str, str] = {}
    used: set[str] = set()
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        source = var.get("valueFrom", {})
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            used.add(f"{ref['name']}/{ref['key']}")
            env[var["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            assert source["fieldRef"]["fieldPath"] == "metadata.namespace", var
            env[var["name"]] = SYSTEM
    for variable, path in list(env.items()):
        if variable.endswith("_FILE"):
            secret, key = mounted_secret_key(spec, container, path)
            used.add(f"{secret}/{key}")
            local = files / name / secret / key
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(secrets[secret][key])
            env[variable] = str(local)
    return env, used


def test_the_manifests_configure_the_webhook_and_the_poller_completely(
        control_plane: ControlPlane, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    example = {doc["metadata"]["name"]: doc["stringData"]
               for doc in documents(K8S / "secrets.yaml.example")}
    secrets = {**example, "fntc-github-app": {**example["fntc-github-app"], "key.pem": pem}}
    webhook_env, webhook_keys = resolved_environment("webhook", secrets, tmp_path)
    poller_env, poller_keys = resolved_environment("poller", secrets, tmp_path)

    api_client = control_plane.api_client()
    try:
        webhook = Settings.from_env(webhook_env)
        # What /readyz builds: with a setting missing it answers 503 forever.
        Admission.from_settings(webhook, TaskStore(api_client))
        poller = Settings.from_env(poller_env)
        build_poller(poller, api_client)   # a SettingsError here is the poller's exit 2
    finally:
        api_client.close()

    assert webhook.log_format == poller.log_format == "json"
    assert webhook.keycloak_admin_password == poller.keycloak_admin_password == "replace-me"
    # The webhook never needs the GitHub App, so it never sees its key.
    assert not any(used.startswith("fntc-github-app/") for used in webhook_keys)
    # The Lease is taken where its Role allows it, and outlives any run.
    assert poller.lease_namespace == find("Role", "fntc-poller-lease")["metadata"]["namespace"]
    job = find("CronJob", "fntc-poller")["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] < poller.lease_duration

    # Every key the manifests read is in the example Secrets and in README's commands.
    used = webhook_keys | poller_keys
    offered = {f"{name}/{key}" for name, data in example.items() for key in data}
    assert used <= offered, used - offered
    readme = (ROOT / "README.md").read_text()
    documented = {f"{name}/{key}" for name, flags in re.findall(
        r"create secret generic (\S+)((?:\s*\\?\s*--from-\w+=[^=\s]+=\S*)+)", readme)
        for key in re.findall(r"--from-\w+=([^=\s]+)=", flags)}
    assert used <= documented, used - documented


# -- images ------------------------------------------------------------------------------

def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines() if line.strip() and not line.startswith("#")]


def first_party_imports(folder: Path, packages: set[str]) -> set[str]:
    found: set[str] = set()
    for source in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found & packages


@pytest.mark.parametrize("program", ["webhook", "poller"])
def test_dockerfile_installs_what_its_entrypoint_needs(program: str) -> None:
    steps = dockerfile_instructions(ROOT / f"Dockerfile.{program}")
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert ("ENTRYPOINT", f'["python", "-m", "{program}"]') in steps
    assert any(kind == "RUN" and "pip install ." in arg for kind, arg in steps)

    copied = [arg.split()[0].rstrip("/") for kind, arg in steps if kind == "COPY"]
    assert all((ROOT / source).exists() for source in copied), copied
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().split()
               if line.startswith("!")}
    assert set(copied) <= allowed, set(copied) - allowed
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    shipped = set(copied) & packages
    assert (ROOT / program / "__main__.py").exists() and program in shipped
    for package in shipped:
        needed = first_party_imports(ROOT / package, packages)
        assert needed <= shipped, f"{package} imports {needed - shipped}, not in the image"

    # The image's user is the one the pod runs as, and its tag is the package version.
    spec = pod_specs()[program]
    (user,) = [arg for kind, arg in steps if kind == "USER"]
    context = spec["securityContext"]
    assert user == f"{context['runAsUser']}:{context['runAsGroup']}"
    assert context["runAsNonRoot"] is True and context["runAsUser"] != 0
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert spec["containers"][0]["image"] == f"fntc-{program}:{version}"
