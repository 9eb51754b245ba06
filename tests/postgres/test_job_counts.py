"""Job counts on a big table (postgres/stats.py): exact up to the cap through the indexes keyed by
queue, estimated past it (and for succeeded jobs) from the planner's statistics, and labelled."""

from __future__ import annotations

from pathlib import Path

from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.sql import parse_queries
from conveyor.job import JobState
from tests.contract.helpers import LEASE, error
from tests.postgres.conftest import inspect
from tests.support import FakeClock, new_job

C = parse_queries((Path(__file__).parent / "counts.sql").read_text(encoding="utf-8"))


def test_small_tables_are_counted_exactly(pg: PostgresBackend) -> None:
    pg.enqueue_many([new_job(queue="a") for _ in range(20)])
    with inspect(pg) as conn:
        conn.execute(C["analyze_jobs"])
    counts = pg.job_counts(exact_below=1000)
    assert counts.jobs == {"a": {JobState.QUEUED: 20}} and not counts.estimated


def test_past_the_cap_counts_are_estimated_and_named(pg: PostgresBackend, clock: FakeClock) -> None:
    pg.enqueue_many([new_job(queue="big") for _ in range(300)])
    pg.enqueue_many([new_job(queue="small") for _ in range(30)])
    runs = pg.claim("w", ["big"], 120, LEASE)
    pg.finish_many(
        [Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED) for r in runs[:100]]
        + [
            Outcome(r.id, r.lease_token, OutcomeKind.DEAD, error=error(1, clock()))
            for r in runs[100:]
        ]
    )
    with inspect(pg) as conn:
        conn.execute(C["analyze_jobs"])

    counts = pg.job_counts(exact_below=50)
    exact = pg.stats()
    assert counts.estimated == {("big", JobState.QUEUED), ("big", JobState.SUCCEEDED)}
    assert counts.jobs["small"] == exact["small"] == {JobState.QUEUED: 30}
    assert counts.jobs["big"][JobState.DEAD] == 20, "under the cap: counted"
    for state in (JobState.QUEUED, JobState.SUCCEEDED):
        assert abs(counts.jobs["big"][state] - exact["big"][state]) <= exact["big"][state] * 0.2
