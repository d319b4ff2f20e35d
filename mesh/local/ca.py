"""A local certificate authority: one root on disk, short-lived SPIFFE certificates per workload.

It stands in for istiod's CA: each workload's certificate names its identity in a URI SAN,
`spiffe://cluster.local/ns/<namespace>/sa/<serviceaccount>`, which is what RBAC matches on.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh.check.semantic import principal

ROOT_LIFETIME = datetime.timedelta(days=365)
WORKLOAD_LIFETIME = datetime.timedelta(hours=24)
# Tolerate clocks of processes that read the certificate a moment "before" it was issued.
BACKDATE = datetime.timedelta(minutes=5)


def spiffe_id(account: str, namespace: str = "default") -> str:
    """The URI SAN of a workload running as `account`, as Istio issues it."""
    return f"spiffe://{principal(account, namespace)}"


@dataclass(frozen=True)
class Identity:
    """A workload's certificate chain and key on disk, and the CA bundle that verifies peers."""

    account: str
    cert: Path
    key: Path
    ca: Path

    @property
    def spiffe_id(self) -> str:
        return spiffe_id(self.account)

    @classmethod
    def stored(cls, account: str, directory: Path) -> Identity:
        """The identity that `LocalCA.issue` wrote into `directory`."""
        return cls(account, directory / "cert.pem", directory / "key.pem", directory / "ca.pem")


class LocalCA:
    """A root key and certificate under `directory`, created on first use and then reused."""

    def __init__(self, directory: Path, name: str = "shop local mesh CA") -> None:
        self.directory = directory
        self.cert_path = directory / "root-cert.pem"
        self.key_path = directory / "root-key.pem"
        if not (self.cert_path.exists() and self.key_path.exists()):
            self._create_root(name)
        self._key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        self._cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def issue(
        self,
        account: str,
        directory: Path,
        *,
        dns_names: tuple[str, ...] = (),
        lifetime: datetime.timedelta = WORKLOAD_LIFETIME,
    ) -> Identity:
        """A fresh key and certificate for `account` in `directory` (cert.pem, key.pem, ca.pem).

        `dns_names` are extra SANs, so that ordinary clients (grpcurl) can verify a server too.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id(account))]
        names += [x509.DNSName(name) for name in dns_names]
        signer = self._key
        assert isinstance(signer, ec.EllipticCurvePrivateKey)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + lifetime)
            .add_extension(x509.SubjectAlternativeName(names), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(signing=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(signer, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        identity = Identity.stored(account, directory)
        _write_private(identity.key, _pem_key(key))
        identity.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        identity.ca.write_bytes(self.cert_path.read_bytes())
        return identity

    def _create_root(self, name: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster.local"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + ROOT_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(signing=True), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_private(self.key_path, _pem_key(key))
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _key_usage(*, signing: bool) -> x509.KeyUsage:
    """A CA signs certificates; a workload signs handshakes and enciphers keys."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not signing,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signing,
        crl_sign=signing,
        encipher_only=False,
        decipher_only=False,
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
