"""SQLite plans of the rate-limited claim: the jobs of a bucket come from their own index, and
the claims of other jobs never walk a rate-limited backlog (it is not in the ready indexes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.backends.sqlite import SQLiteBackend
from conveyor.backends.sqlite.connection import Q
from conveyor.limits import RateLimit
from conveyor.settings import Settings
from tests.support import new_job


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteBackend]:
    backend = SQLiteBackend(Settings.load(env={}, url=f"sqlite:///{tmp_path / 'jobs.db'}"))
    rate = RateLimit(1, per=3600)
    backend.enqueue_many(
        [new_job("t", rate_key=f"k{n % 50}", rate_limit=rate) for n in range(2000)]
    )
    backend.enqueue_many([new_job() for _ in range(10)])
    yield backend
    backend.close()


def plan(backend: SQLiteBackend, query: str, params: dict[str, Any]) -> str:
    rows = backend._reader.raw.execute(f"EXPLAIN QUERY PLAN {Q[query]}", params).fetchall()
    return "\n".join(str(row["detail"]) for row in rows)


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
def test_rate_limited_jobs_come_from_their_own_index(store: SQLiteBackend, analyzed: bool) -> None:
    if analyzed:
        store._writer.raw.execute("ANALYZE")
    params = {"now": 0.0, "queues": None, "limit": 10, "held": "[]", "only": None}
    picking = plan(store, "pick_rate_limited", params)
    assert "USING INDEX conveyor_jobs_rate_ready (task=? AND rate_key=?)" in picking
    claim = plan(store, "claim_any", {"now": 0.0, "lease": 1.0, "worker_id": "w", "limit": 5,
                                     "boot": None, "uptime": None})  # fmt: skip
    assert "conveyor_jobs_ready" in claim and "conveyor_jobs_rate_ready" not in claim


def test_other_jobs_are_claimed_past_the_backlog(store: SQLiteBackend) -> None:
    runs = store.claim("w", None, 100, 30.0)
    # One job of each of the 50 keys, and the 10 others.
    assert sorted(r.task for r in runs).count("tests.noop") == 10
    assert len(runs) == 60
