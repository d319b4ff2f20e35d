"""The local CA: a root reused across runs, workload certificates naming SPIFFE identities."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

from cryptography import x509

from mesh.local.ca import WORKLOAD_LIFETIME, LocalCA, spiffe_id


def test_workload_certificate_names_its_spiffe_identity(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "ca")
    identity = ca.issue("orders", tmp_path / "orders", dns_names=("orders.default.svc",))

    cert = x509.load_pem_x509_certificate(identity.cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/default/sa/orders"
    ]
    assert names.get_values_for_type(x509.DNSName) == ["orders.default.svc"]
    assert identity.spiffe_id == spiffe_id("orders")
    root = x509.load_pem_x509_certificate(identity.ca.read_bytes())
    cert.verify_directly_issued_by(root)
    assert cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) <= WORKLOAD_LIFETIME
    assert stat.S_IMODE(identity.key.stat().st_mode) == 0o600


def test_root_is_created_once_and_reused(tmp_path: Path) -> None:
    first = LocalCA(tmp_path / "ca").cert_path.read_bytes()
    again = LocalCA(tmp_path / "ca")
    assert again.cert_path.read_bytes() == first
    other = LocalCA(tmp_path / "other")
    assert other.cert_path.read_bytes() != first
