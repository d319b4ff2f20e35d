"""Where pact files live and how they are written: staged per run, published deterministically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pact import Pact

PACT_DIR = Path(__file__).resolve().parents[1] / "pacts"


def pact_path(consumer: str, provider: str, directory: Path = PACT_DIR) -> Path:
    """The file pact-python writes for a consumer-provider pair (its own naming rule)."""
    return directory / f"{consumer}-{provider}.json"


def stage(pact: Pact, staging: Path) -> None:
    """Merge one test's interactions into the staged pact (tests each build their own `Pact`)."""
    pact.write_file(staging, overwrite=False)


def _interaction_key(interaction: dict[str, Any]) -> tuple[str, str]:
    states = json.dumps(interaction.get("providerStates", []), sort_keys=True)
    return str(interaction.get("description", "")), states


def normalise(text: str) -> str:
    """A pact's JSON with sorted keys and interactions, two-space indents and a final newline.

    pact_ffi writes interactions in the order tests ran; sorting makes the file a function of
    the interactions alone, so `git diff --exit-code` only fires on real contract changes.
    """
    document = json.loads(text)
    document["interactions"] = sorted(document.get("interactions", []), key=_interaction_key)
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def publish(staging: Path, directory: Path = PACT_DIR) -> list[Path]:
    """Copy every staged pact into `directory`, normalised; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for staged in sorted(staging.glob("*.json")):
        target = directory / staged.name
        text = normalise(staged.read_text())
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
        written.append(target)
    return written


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def interactions_by_description(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """Every interaction of the given pact files, by description (unique within a provider)."""
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        for interaction in load(path).get("interactions", []):
            found[str(interaction["description"])] = interaction
    return found


def pacts_for(provider: str, directory: Path = PACT_DIR, consumer: str | None = None) -> list[Path]:
    """The committed pacts in which `provider` is the provider (and `consumer`, if given, the
    consumer: a provider's gRPC and message pacts need different verifications)."""
    return sorted(
        p
        for p in directory.glob("*.json")
        if load(p)["provider"]["name"] == provider
        and consumer in (None, load(p)["consumer"]["name"])
    )
