"""Provider verification with pact-python's Verifier, reported as plain text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pact import Verifier

from contracts.pact.states import MESSAGE_PATH, ProviderHooks


@dataclass(frozen=True)
class Verification:
    provider: str
    passed: bool
    report: str  # Pact's own report: every interaction, and each mismatch with its JSON path

    def __str__(self) -> str:
        verdict = "verified" if self.passed else "FAILED verification"
        return f"{self.provider} {verdict}:\n{self.report}"


def _run(verifier: Verifier, provider: str, pacts: Sequence[Path]) -> Verification:
    if not pacts:
        return Verification(provider, False, f"no pact names {provider} as its provider")
    for path in pacts:
        verifier.add_source(path)
    verifier.set_coloured_output(enabled=False).set_error_on_empty_pact(enabled=True)
    try:
        verifier.verify()
    except RuntimeError:
        return Verification(provider, False, str(verifier.output(strip_ansi=True)))
    return Verification(provider, True, str(verifier.output(strip_ansi=True)))


def verify_http(
    provider: str, pacts: Sequence[Path], base_url: str, hooks: ProviderHooks
) -> Verification:
    """Replay every HTTP interaction of `pacts` against `base_url`, after its provider states."""
    verifier = Verifier(provider, host="127.0.0.1").add_transport(url=base_url)
    verifier.state_handler(hooks.state_url, body=True)
    return _run(verifier, provider, pacts)


def verify_messages(provider: str, pacts: Sequence[Path], hooks: ProviderHooks) -> Verification:
    """Verify message interactions: `hooks.produce` makes each message (for a synchronous
    message, the provider's response to the request it is given), after its provider states."""
    verifier = Verifier(provider, host="127.0.0.1").add_transport(
        protocol="message", port=hooks.port, path=MESSAGE_PATH
    )
    verifier.state_handler(hooks.state_url, body=True)
    return _run(verifier, provider, pacts)
