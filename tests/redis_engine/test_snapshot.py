"""Backup and restore on Redis leave no key behind them: the export's frozen copy is deleted
when the export ends or is closed midway, and a failed import deletes every key it wrote and
puts the id counter back (the contract suite compares records; this compares the keys)."""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import cast

import pytest

from conveyor.backends.redis import RedisBackend
from conveyor.errors import SnapshotError
from conveyor.snapshot.moves import copy_between
from conveyor.snapshot.records import Record
from tests.contract.test_snapshot import populate
from tests.redis_engine.factory import redis_backend
from tests.support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def source(tmp_path: Path, clock: FakeClock) -> Iterator[RedisBackend]:
    with redis_backend(tmp_path, clock, {}) as backend:
        populate(backend, clock)
        yield backend


@pytest.fixture
def target(tmp_path: Path, clock: FakeClock) -> Iterator[RedisBackend]:
    with redis_backend(tmp_path, clock, {}) as backend:
        yield backend


def keys(backend: RedisBackend) -> dict[str, str]:
    """Every key under the backend's prefix with its value dumped (the change marker aside:
    scripts move it to wake pollers)."""
    client = backend._db.client
    pattern = backend.prefix.replace("{", "\\{").replace("}", "\\}") + ":*"
    found = sorted(k for k in client.scan_iter(match=pattern) if not k.endswith(":marker"))
    return {k: client.dump(k) for k in found}


def test_an_export_leaves_no_copy_behind(source: RedisBackend) -> None:
    before = keys(source)
    list(source.export_snapshot())
    assert keys(source) == before
    # The engines' exports are generators: closing one ends it where it stands.
    export = cast("Generator[Record, None, None]", source.export_snapshot())
    list(itertools.islice(export, 12))  # among the jobs
    export.close()
    assert keys(source) == before


def _damaged(records: Iterator[Record], after: int) -> Iterator[Record]:
    for n, values in enumerate(records):
        if n == after:
            raise SnapshotError("line 30: not a JSON object")
        yield values


def test_a_failed_import_leaves_no_key_behind(source: RedisBackend, target: RedisBackend) -> None:
    before = keys(target)
    total = len(list(source.export_snapshot()))
    for after in (5, 16, total - 2):  # among the settings, among the jobs, at the last job
        with pytest.raises(SnapshotError, match="line 30"):
            target.import_snapshot(_damaged(source.export_snapshot(), after))
        assert keys(target) == before
    # Everything written, then the counts disagree with the header's: undone all the same.
    edited = list(source.export_snapshot())
    edited[0] = dict(edited[0], counts=dict(edited[0]["counts"], edge=2))
    with pytest.raises(SnapshotError, match="cut short or edited"):
        target.import_snapshot(iter(edited))
    assert keys(target) == before
    copy_between(source, target)
    assert len(target.list_jobs(limit=1000)) == len(source.list_jobs(limit=1000))


def test_the_copy_of_an_exporter_that_died_is_deleted_a_day_later(source: RedisBackend) -> None:
    before = keys(source)
    abandoned = source.export_snapshot()
    next(abandoned)  # frozen, then the exporter dies: its copy stays
    client = source._db.client
    [token] = client.zrange(f"{source.prefix}:snaps", 0, -1)
    assert client.exists(f"{source.prefix}:snap:{token}:jobs")
    list(source.export_snapshot())  # another export: the copy is not a day old yet
    assert client.exists(f"{source.prefix}:snap:{token}:jobs")
    client.zadd(f"{source.prefix}:snaps", {token: 1.0})  # listed long ago
    list(source.export_snapshot())
    assert keys(source) == before
