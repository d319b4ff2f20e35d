"""Pact fixtures: each test builds its own Pact; a module's pacts are published if it passed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pact import Pact

from contracts.pact import files


@pytest.fixture(scope="module")
def pact_staging(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Path]:
    """Interactions of one consumer test module, published to contracts/pacts/ only when every
    test of the module passed (a failing consumer test must not rewrite the contract)."""
    staging = tmp_path_factory.mktemp("pacts")
    failures = request.session.testsfailed
    yield staging
    if request.session.testsfailed == failures:
        files.publish(staging)


@pytest.fixture
def new_pact(pact_staging: Path) -> Iterator[Callable[[str, str], Pact]]:
    """`new_pact(consumer, provider)`: a Pact for this test, staged when the test ends."""
    made: list[Pact] = []

    def make(consumer: str, provider: str) -> Pact:
        pact = Pact(consumer, provider).with_specification("V4")
        made.append(pact)
        return pact

    yield make
    for pact in made:
        files.stage(pact, pact_staging)
