"""`conveyor.copy` of a live SQLite queue to PostgreSQL and to Redis: a worker drains the source
and a producer fills it while the copy runs. The copy is one moment of the source: every job present
exactly once, in a state it had, parents and children agreeing; the target then drains under a
worker of its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import conveyor
from conveyor import Conveyor, JobState
from tests.postgres.factory import new_schema, session_database
from tests.redis_engine.factory import redis_database
from tests.support import new_job
from tests.worker.harness import wait_for

PAIRS = 150


def build(url: str, schema: str | None = None, prefix: str = "conveyor") -> Conveyor:
    app = Conveyor(url, postgres_schema=schema, redis_prefix=prefix)

    @app.task(name="live.step", queue="live")
    def step(n: int) -> int:
        time.sleep(0.001)
        return n

    return app


@pytest.fixture(params=["postgres", "redis"])
def target(request: pytest.FixtureRequest) -> Iterator[Conveyor]:
    if request.param == "redis":
        with redis_database() as (url, prefix):
            app = build(url, prefix=prefix)
            try:
                yield app
            finally:
                app.close()
        return
    database = session_database()
    schema = new_schema()
    app = build(database.url, schema)
    try:
        yield app
    finally:
        app.close()
        database.drop_schema(schema)


def succeeded(app: Conveyor) -> int:
    return sum(states.get(JobState.SUCCEEDED, 0) for states in app.stats().values())


def test_a_live_queue_moves_to_another_engine(tmp_path: Path, target: Conveyor) -> None:
    source = build(f"sqlite:///{tmp_path / 'live.db'}")
    # Parent and child pairs: the child waits for its parent (ids 2i+1 and 2i+2).
    jobs = []
    for i in range(PAIRS):
        jobs += [
            new_job("live.step", "live", args_json=f"[{i}]"),
            new_job("live.step", "live", args_json=f"[{i}]", depends_on_batch=(2 * i,)),
        ]
    source.enqueue_raw(jobs)
    worker = source.worker(concurrency=4, install_signal_handlers=False)
    draining = threading.Thread(target=worker.run, daemon=True)
    draining.start()
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            source.enqueue("live.step", [n])
            n += 1

    producer = threading.Thread(target=produce, daemon=True)
    try:
        wait_for(lambda: succeeded(source) >= 20, "the worker to get going")
        producer.start()
        produced = 2 * PAIRS + 20
        wait_for(lambda: source.list_jobs(limit=1)[0].id > produced, "the producer to get going")
        summary = conveyor.copy(source, target)
        wait_for(lambda: succeeded(source) >= 2 * PAIRS, "the source to drain its pairs")
    finally:
        stop.set()
        producer.join(timeout=30)
        worker.stop()
        draining.join(timeout=30)

    copied = {job.id: job for job in target.list_jobs(limit=100_000)}
    after = {job.id: job for job in source.list_jobs(limit=100_000)}
    # Every job of one moment, exactly once: ids are handed out in commit order on SQLite, so
    # the jobs of a moment are 1..N with no gap.
    assert sorted(copied) == list(range(1, summary.counts["job"] + 1))
    assert len(copied) > 2 * PAIRS + 20
    assert len(after) >= len(copied)
    # Taken mid-stream: some of its jobs were still to run.
    assert any(job.state is not JobState.SUCCEEDED for job in copied.values())
    for job_id, job in copied.items():
        later = after[job_id]
        assert (job.task, job.args) == (later.task, later.args)
        assert job.created_at == pytest.approx(later.created_at, abs=1e-6)  # PostgreSQL: µs
        assert job.state in (JobState.QUEUED, JobState.BLOCKED, JobState.SUCCEEDED), job
        if job.state is JobState.SUCCEEDED:
            assert later.state is JobState.SUCCEEDED and later.result == job.result
    # Parents and children agree, as they did at that moment.
    for i in range(PAIRS):
        parent, child = copied[2 * i + 1], copied[2 * i + 2]
        if parent.state is JobState.SUCCEEDED:
            assert child.state is not JobState.BLOCKED
        else:
            assert (child.state, child.pending_parents) == (JobState.BLOCKED, 1)
    # The copied queue works: a worker on the target finishes every job.
    target.run_worker(burst=True, concurrency=4, install_signal_handlers=False)
    assert succeeded(target) == len(copied)
    assert target.list_jobs(limit=1)[0].id == len(copied)
    source.close()
