"""An app on each enabled engine, with the tasks of tests/workflows/tasks.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.testing import Clock
from tests.support import enabled_backends
from tests.workflows.tasks import register


@pytest.fixture(params=enabled_backends())
def url_and_schema(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if request.param == "sqlite":
        yield {"url": f"sqlite:///{tmp_path / 'jobs.db'}"}
        return
    if request.param == "redis":
        from tests.redis_engine.factory import redis_database

        with redis_database() as (url, prefix):
            yield {"url": url, "redis_prefix": prefix}
        return
    from tests.postgres.factory import new_schema, session_database

    database, schema = session_database(), new_schema()
    try:
        yield {"url": database.url, "postgres_schema": schema}
    finally:
        database.drop_schema(schema)


@pytest.fixture
def clock() -> Clock:
    return Clock(1_800_000_000.0)


@pytest.fixture
def app(url_and_schema: dict[str, Any], clock: Clock) -> Iterator[Conveyor]:
    with register(Conveyor(clock=clock, **url_and_schema)) as conveyor:
        yield conveyor
