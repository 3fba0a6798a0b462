"""The emulator the tests of this folder talk to over HTTP: one per module, generations ready at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_stableaudio.emulator import EmulatorConfig, EmulatorServer
from tests.emulator.stability_helpers import KEY


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    """A module's emulator (a module that needs other settings defines its own ``server``)."""
    with EmulatorServer(config=EmulatorConfig(generation_seconds=0, api_keys=frozenset({KEY}))) as srv:
        yield srv
