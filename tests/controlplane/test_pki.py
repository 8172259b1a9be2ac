"""The certificates verify the way TLS peers will check them, not just parse."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane import pki


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create()


@pytest.fixture
def tls_server(ca: pki.CertificateAuthority, tmp_path: Path) -> Iterator[int]:
    """A loopback TLS server presenting a serving certificate for webhook.fntc.svc."""
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    pki.write_key_pair(cert_path, key_path,
                       pki.issue_serving_certificate(ca, ["webhook.fntc.svc"]))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # listener closed: the test is over
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"hello")
            except (ssl.SSLError, OSError):
                pass  # a client that rejects the certificate hangs up mid-handshake

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
    listener.close()
    thread.join(timeout=5)


def _handshake(port: int, server_hostname: str, ca_pem: bytes) -> bytes:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            return tls.recv(5)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "webhook.fntc.svc"])
def test_serving_certificate_passes_tls_verification_for_each_name(
    tls_server: int, ca: pki.CertificateAuthority, host: str
) -> None:
    assert _handshake(tls_server, host, ca.cert_pem) == b"hello"


def test_serving_certificate_is_rejected_for_a_name_it_does_not_carry(
    tls_server: int, ca: pki.CertificateAuthority
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(tls_server, "other.fntc.svc", ca.cert_pem)


def test_serving_certificate_is_rejected_under_another_ca(tls_server: int) -> None:
    stranger = pki.CertificateAuthority.create("someone-else")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls_server, "127.0.0.1", stranger.cert_pem)


def test_client_certificate_names_the_admin_in_system_masters(
    ca: pki.CertificateAuthority,
) -> None:
    cert_pem, key_pem = pki.issue_client_certificate(ca)
    cert = x509.load_pem_x509_certificate(cert_pem)

    cert.verify_directly_issued_by(ca.certificate)
    subject = cert.subject
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["admin"]
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters"
    ]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert key.public_key() == cert.public_key()


def test_leaf_certificates_cannot_sign_other_certificates(
    ca: pki.CertificateAuthority,
) -> None:
    cert = x509.load_pem_x509_certificate(pki.issue_serving_certificate(ca)[0])
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False
    other = pki.CertificateAuthority.create("other")
    with pytest.raises((InvalidSignature, ValueError)):
        cert.verify_directly_issued_by(other.certificate)


def test_service_account_keys_form_an_rsa_pair() -> None:
    private_pem, public_pem = pki.generate_service_account_key_pair()
    private = serialization.load_pem_private_key(private_pem, password=None)
    public = serialization.load_pem_public_key(public_pem)
    assert isinstance(private, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey)

    signature = private.sign(b"claims", padding.PKCS1v15(), hashes.SHA256())
    public.verify(signature, b"claims", padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        public.verify(signature, b"other claims", padding.PKCS1v15(), hashes.SHA256())


def test_written_ca_loads_back_with_a_private_key_file(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    ca.write(tmp_path / "ca.crt", tmp_path / "ca.key")

    assert pki.CertificateAuthority.load(tmp_path / "ca.crt", tmp_path / "ca.key") == ca
    assert (tmp_path / "ca.key").stat().st_mode & 0o777 == 0o600
