"""Istio mutual TLS between sidecars: TLS contexts built from the local CA's identities."""

from __future__ import annotations

from collections.abc import Iterable

from mesh.local.ca import Identity, spiffe_id
from mesh.local.xds import JSON, typed


def downstream(identity: Identity) -> JSON:
    """The inbound listener's TLS: this workload's certificate; clients must present theirs.

    STRICT mTLS refuses a caller without a certificate in the handshake. Under TLS 1.3 the server
    checks the client's certificate after the client has finished, so a caller without one only
    sees its deadline pass; capped at 1.2, it gets a handshake alert at once.
    """
    context = _context(identity)
    context["tls_params"]["tls_maximum_protocol_version"] = "TLSv1_2"
    return _socket(
        typed(
            "extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            require_client_certificate=True,
            common_tls_context=context,
        )
    )


def upstream(identity: Identity, accounts: Iterable[str], namespace: str, sni: str) -> JSON:
    """A cluster's TLS: this workload's certificate, and a server running as one of `accounts`."""
    context = _context(identity)
    context["validation_context"]["match_typed_subject_alt_names"] = [
        {"san_type": "URI", "matcher": {"exact": spiffe_id(a, namespace)}} for a in accounts
    ]
    return _socket(
        typed(
            "extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            common_tls_context=context,
            sni=sni,
        )
    )


def _socket(context: JSON) -> JSON:
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def _context(identity: Identity) -> JSON:
    return {
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
        "alpn_protocols": ["h2"],
        "tls_certificates": [
            {
                "certificate_chain": {"filename": str(identity.cert)},
                "private_key": {"filename": str(identity.key)},
            }
        ],
        "validation_context": {"trusted_ca": {"filename": str(identity.ca)}},
    }
