"""Development signing key, its JWKS, and RS256 tokens the gateway's jwt_authn accepts.

The key is created on first use under var/ (git-ignored); production deployments point the
gateway at their identity provider's JWKS instead.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.settings import Settings

KEY_ID = "shop-dev-1"


def ensure_dev_key(settings: Settings) -> None:
    """Create a signing key and the JWKS holding its public half, unless a JWKS exists.

    An existing JWKS without a key beside it belongs to a real identity provider: keep it.
    """
    if settings.jwks_file.exists():
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    settings.signing_key_file.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(settings.signing_key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    public.update(kid=KEY_ID, alg="RS256", use="sig")
    settings.jwks_file.parent.mkdir(parents=True, exist_ok=True)
    settings.jwks_file.write_text(json.dumps({"keys": [public]}, indent=2) + "\n")


def mint_token(settings: Settings, user_id: str, ttl_seconds: int = 3600) -> str:
    """A token for `user_id`, signed with the development key."""
    if not user_id:
        raise ValueError("USER must name a user id")
    ensure_dev_key(settings)
    if not settings.signing_key_file.exists():
        raise FileNotFoundError(
            f"SIGNING_KEY_FILE {settings.signing_key_file} not found: tokens for JWKS_FILE "
            f"{settings.jwks_file} come from the identity provider that owns it"
        )
    now = int(time.time())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": user_id,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    key = settings.signing_key_file.read_bytes()
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KEY_ID})


def read_jwks(path: Path) -> str:
    """The JWKS text, checked to be a JSON object with a `keys` list."""
    if not path.is_file():
        raise FileNotFoundError(f"JWKS_FILE {path} not found")
    text = path.read_text()
    document = json.loads(text)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError(f"JWKS_FILE {path} is not a JWKS (an object with a `keys` list)")
    return text
