"""An app on each enabled engine, with the tasks of tests/workflows/tasks.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.testing import Clock
from tests.support import app_options, enabled_backends
from tests.workflows.tasks import register


@pytest.fixture(params=enabled_backends())
def url_and_schema(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    with app_options(request.param, tmp_path) as options:
        yield options


@pytest.fixture
def clock() -> Clock:
    return Clock(1_800_000_000.0)


@pytest.fixture
def app(url_and_schema: dict[str, Any], clock: Clock) -> Iterator[Conveyor]:
    with register(Conveyor(clock=clock, **url_and_schema)) as conveyor:
        yield conveyor
