"""A local Kubernetes control plane (kube-apiserver and etcd) for tests and the demo.

``ControlPlane`` runs the servers; ``pki`` makes the certificates they and
our admission webhook present; ``binaries`` builds the pinned releases once
per machine. ``python -m controlplane up --dir DIR`` runs one from a shell.
"""

from controlplane.binaries import BinariesUnavailable, ensure_binaries
from controlplane.cluster import ControlPlane, ControlPlaneError, KubectlError
from controlplane.pki import CertificateAuthority, issue_serving_certificate

__all__ = [
    "BinariesUnavailable",
    "CertificateAuthority",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "ensure_binaries",
    "issue_serving_certificate",
]
