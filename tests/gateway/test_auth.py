"""Development tokens: the key is made once, and tokens verify against the JWKS."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest

from gateway import auth
from gateway.settings import Settings


def dev_settings(tmp_path: Path) -> Settings:
    return Settings(jwks_file=tmp_path / "jwks.json", signing_key_file=tmp_path / "key.pem")


def test_token_verifies_against_the_jwks(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path)
    token = auth.mint_token(settings, "u-42")
    jwks = jwt.PyJWKSet.from_json(settings.jwks_file.read_text())
    key = jwks[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    assert claims["sub"] == "u-42"
    assert settings.signing_key_file.stat().st_mode & 0o077 == 0


def test_key_is_created_once(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path)
    auth.ensure_dev_key(settings)
    first = settings.jwks_file.read_text()
    auth.ensure_dev_key(settings)
    assert settings.jwks_file.read_text() == first


def test_foreign_jwks_is_kept_and_cannot_mint(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path)
    settings.jwks_file.write_text(json.dumps({"keys": []}))
    with pytest.raises(FileNotFoundError, match="SIGNING_KEY_FILE"):
        auth.mint_token(settings, "u-1")
    assert json.loads(settings.jwks_file.read_text()) == {"keys": []}


def test_user_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="USER"):
        auth.mint_token(dev_settings(tmp_path), "")
