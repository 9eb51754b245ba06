"""PostgreSQL: a heartbeat never waits for the row of a run that another transaction holds --
most often the worker writing that run's outcome. Waiting, a beat and a finish that locked the
same runs in other orders deadlocked, and PostgreSQL broke the deadlock only after a second,
while the worker's outcomes stood still."""

from __future__ import annotations

from pathlib import Path

from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.sql import parse_queries
from tests.postgres.conftest import inspect
from tests.support import FakeClock, new_job

T = parse_queries((Path(__file__).parent / "leases.sql").read_text(encoding="utf-8"))


def test_a_beat_skips_a_held_row_and_the_run_stays_the_workers(
    pg: PostgresBackend, clock: FakeClock
) -> None:
    pg.enqueue_many([new_job(), new_job()])
    held, free = pg.claim("w1", None, 2, 30.0)
    before = pg.get(held.id).lease_expires_at
    clock.advance(10)

    with inspect(pg) as conn, conn.transaction():
        conn.execute(T["lock_job"], {"id": held.id})
        report = pg.extend_leases([held.lease_token, free.lease_token], 30.0)

    assert report.extended == {free.lease_token}
    assert report.lost == frozenset(), "a held row is not a lost run"
    assert pg.get(held.id).lease_expires_at == before
    assert pg.get(free.id).lease_expires_at == clock.now + 30.0
    # The next beat, with the row free again, extends it.
    assert pg.extend_leases([held.lease_token], 30.0).extended == {held.lease_token}


def test_a_beat_still_hears_a_cancel_request_for_a_held_row(
    pg: PostgresBackend, clock: FakeClock
) -> None:
    pg.enqueue_many([new_job()])
    [run] = pg.claim("w1", None, 1, 30.0)
    pg.cancel(run.id)

    with inspect(pg) as conn, conn.transaction():
        conn.execute(T["lock_job"], {"id": run.id})
        report = pg.extend_leases([run.lease_token], 30.0)

    assert (report.extended, report.lost) == (frozenset(), frozenset())
    assert report.cancel_requested == {run.lease_token}
