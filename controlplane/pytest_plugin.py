"""Pytest fixtures for tests that need a real API server.

One control plane serves the whole test session and is started only when a
test first asks for it; each test then gets a namespace of its own, so
tests do not see each other's objects. Namespaces are not deleted at the
end: without a controller-manager they would stay Terminating anyway, and
the whole etcd goes away with the session.

Tests that use the control plane are marked ``cluster``, so
``pytest -m "not cluster"`` runs everything else.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import kubernetes
import pytest

from controlplane.binaries import BinariesUnavailable, ensure_binaries
from controlplane.cluster import ControlPlane, ControlPlaneError

_CLUSTER_FIXTURES = {"control_plane", "namespace", "kube_api"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--keep-control-plane", action="store_true", default=False,
        help="keep the control plane's work folder (logs, kubeconfig) after the session",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver for this session, with an admin kubeconfig."""
    # A first build takes minutes; let its progress through pytest's capture
    # so nobody wonders whether the run hangs.
    capture = request.config.pluginmanager.getplugin("capturemanager")
    try:
        if capture is not None:
            with capture.global_and_fixture_disabled():
                binaries = ensure_binaries()
        else:
            binaries = ensure_binaries()
    except BinariesUnavailable as e:
        pytest.fail(f"cannot get kube-apiserver, etcd and kubectl: {e}", pytrace=False)

    keep = bool(request.config.getoption("--keep-control-plane"))
    plane = ControlPlane(binaries=binaries, keep_work_dir=keep)
    try:
        plane.start()
    except ControlPlaneError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()
        if keep:
            print(f"\ncontrol plane files kept in {plane.work_dir}")


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A fresh namespace named after the test, unique within the session."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return control_plane.create_namespace(f"{slug or 'test'}-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane) -> Iterator[kubernetes.client.ApiClient]:
    """An ApiClient of the official ``kubernetes`` package, acting as the admin."""
    client = control_plane.api_client()
    try:
        yield client
    finally:
        client.close()
