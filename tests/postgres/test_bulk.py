"""The COPY path of bulk enqueue: ids reserved ahead as a run (or one by one when the run is
broken), and times left to the column defaults when the batch is due on the server's clock."""

from __future__ import annotations

from pathlib import Path

from conveyor.backends.base import EnqueueResult
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.enqueue import STAGE_FROM
from conveyor.backends.sql import parse_queries
from conveyor.job import JobState
from tests.postgres.conftest import inspect
from tests.support import new_job

B = parse_queries((Path(__file__).parent / "bulk.sql").read_text(encoding="utf-8"))


def _stored(backend: PostgresBackend) -> list[tuple[object, ...]]:
    with inspect(backend) as conn:
        return conn.execute(B["stored_jobs"]).fetchall()


def test_a_batch_due_now_takes_the_server_clock_for_its_times(
    pg_real_time: PostgresBackend,
) -> None:
    jobs = [new_job(args_json=f"[{i}]") for i in range(STAGE_FROM)]

    results = pg_real_time.enqueue_many(jobs)

    rows = _stored(pg_real_time)
    assert [r.job_id for r in results] == [row[0] for row in rows]
    assert [row[1] for row in rows] == [f"[{i}]" for i in range(STAGE_FROM)]
    assert {row[2] for row in rows} == {"queued"}
    clock = results[0].at
    assert clock is not None
    # Every row's times are the clock the batch reported, to the microsecond.
    assert {(row[3], row[4]) for row in rows} == {(clock, clock)}
    assert all(r.at == clock and r.state is JobState.QUEUED for r in results)


def test_a_batch_with_a_delayed_job_writes_its_times(pg_real_time: PostgresBackend) -> None:
    jobs = [new_job(args_json=f"[{i}]") for i in range(STAGE_FROM)]
    jobs[7] = new_job(args_json="[7]", delay=3600.0)

    results = pg_real_time.enqueue_many(jobs)

    rows = _stored(pg_real_time)
    clock = results[0].at
    assert clock is not None
    assert rows[7][2] == "scheduled" and results[7].state is JobState.SCHEDULED
    assert abs(float(str(rows[7][3])) - (clock + 3600.0)) < 1e-5
    assert {(row[3], row[4]) for i, row in enumerate(rows) if i != 7} == {(clock, clock)}


def test_a_broken_run_of_ids_is_drawn_again(pg_real_time: PostgresBackend) -> None:
    with inspect(pg_real_time) as conn:
        conn.execute(B["break_id_runs"])
    jobs = [new_job(args_json=f"[{i}]") for i in range(STAGE_FROM)]

    results = pg_real_time.enqueue_many(jobs)

    rows = _stored(pg_real_time)
    ids = [r.job_id for r in results]
    assert ids == [row[0] for row in rows], "ids follow the order of the batch"
    assert ids[1] - ids[0] == 2 and len(set(ids)) == STAGE_FROM
    assert [row[1] for row in rows] == [f"[{i}]" for i in range(STAGE_FROM)]
    assert [pg_real_time.get(r.job_id).args for r in results[:3]] == [[0], [1], [2]]


def test_meanwhile_gets_the_very_results_returned(pg_real_time: PostgresBackend) -> None:
    early: list[list[EnqueueResult]] = []

    results = pg_real_time.enqueue_many([new_job() for _ in range(STAGE_FROM)], early.append)

    assert len(early) == 1 and early[0] is results
