from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.backends.base import Backend
from tests.support import FACTORIES, FakeClock, enabled_backends


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=enabled_backends())
def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Backend]:
    """A fresh, empty backend of each enabled engine, driven by the fake clock."""
    with FACTORIES[request.param](tmp_path, clock, {}) as engine:
        yield engine
