"""Certificates and keys for a local control plane and the servers it calls.

Everything here is for loopback test clusters: one throwaway certificate
authority signs the API server's serving certificate, the admin's client
certificate and the serving certificates of admission webhooks, so one CA
bundle lets every party verify every other. Keys are ECDSA P-256 because
they are generated in milliseconds; the service-account signing key is RSA
because that is what token verifiers expect by default.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Names every serving certificate answers to, so clients on this machine can
#: reach a server by IP or by name without further configuration.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")

#: Long enough for a demo left running over a weekend, short enough that a
#: leaked test key is worthless soon.
VALIDITY = datetime.timedelta(days=30)

#: Certificates start slightly in the past so a clock a little behind ours
#: (another process, a container) still accepts them.
CLOCK_SKEW = datetime.timedelta(minutes=5)

ADMIN_USER = "admin"
ADMIN_GROUP = "system:masters"


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate with its private key, both PEM encoded."""

    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def create(cls, common_name: str = "fntc-local-ca") -> CertificateAuthority:
        """Make a fresh self-signed CA allowed to sign leaf certificates only."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (
            _builder(subject=name, issuer=name, public_key=key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert_pem=_cert_pem(cert), key_pem=_key_pem(key))

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        """Read a CA written by :meth:`write`, e.g. by another process."""
        return cls(cert_pem=cert_path.read_bytes(), key_pem=key_path.read_bytes())

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Store the CA; the key file is readable by its owner only."""
        cert_path.write_bytes(self.cert_pem)
        _write_private(key_path, self.key_pem)

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """Sign a leaf certificate, linking it to this CA by key identifier."""
        ca_key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
        ca_cert = self.certificate
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
            critical=False,
        )
        return builder.sign(ca_key, hashes.SHA256())


def issue_serving_certificate(
    ca: CertificateAuthority, hosts: Iterable[str] = ()
) -> tuple[bytes, bytes]:
    """Issue a TLS server certificate for the loopback names plus ``hosts``.

    Each host that parses as an IP address becomes an IP SAN, anything else a
    DNS SAN; 127.0.0.1 and localhost are always included because the API
    server and webhooks here are reached on loopback. Returns
    ``(cert_pem, key_pem)``.
    """
    names = list(dict.fromkeys([*LOOPBACK_HOSTS, *hosts]))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[-1])])
    builder = (
        _builder(subject=subject, issuer=ca.certificate.subject, public_key=key.public_key())
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    return _cert_pem(ca.sign(builder)), _key_pem(key)


def issue_client_certificate(
    ca: CertificateAuthority, user: str = ADMIN_USER, groups: Iterable[str] = (ADMIN_GROUP,)
) -> tuple[bytes, bytes]:
    """Issue a client certificate the API server maps to ``user`` in ``groups``.

    kube-apiserver reads the user name from the common name and the groups
    from the organization entries. Returns ``(cert_pem, key_pem)``.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    builder = (
        _builder(subject=x509.Name(attributes), issuer=ca.certificate.subject,
                 public_key=key.public_key())
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    return _cert_pem(ca.sign(builder)), _key_pem(key)


def generate_service_account_key_pair() -> tuple[bytes, bytes]:
    """Make the RSA key pair the API server signs and checks service-account tokens with.

    Returns ``(private_pem, public_pem)``.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _key_pem(key), public_pem


def write_key_pair(cert_path: Path, key_path: Path, pair: tuple[bytes, bytes]) -> None:
    """Write a ``(cert_pem, key_pem)`` pair; the key file is readable by its owner only."""
    cert_path.write_bytes(pair[0])
    _write_private(key_path, pair[1])


def _builder(
    *, subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, key_encipherment=False, content_commitment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False,
        crl_sign=False, encipher_only=False, decipher_only=False,
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)
