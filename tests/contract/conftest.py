"""Fixtures of the contract suite, on top of ``backend`` and ``clock`` from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from conveyor.backends.base import Backend
from tests.support import FACTORIES, FakeClock, enabled_backends

MakeBackend = Callable[..., Backend]


@pytest.fixture(params=enabled_backends())
def make_backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[MakeBackend]:
    """``make_backend(**overrides)``: a fresh, empty backend of each enabled engine with settings
    overrides (e.g. ``queue_limits={"emails": 2}``), driven by the fake clock."""
    factory = FACTORIES[request.param]
    serial = count(1)
    with ExitStack() as stack:

        def make(**overrides: Any) -> Backend:
            folder = tmp_path / f"store{next(serial)}"
            folder.mkdir()
            return stack.enter_context(factory(folder, clock, dict(overrides)))

        yield make
