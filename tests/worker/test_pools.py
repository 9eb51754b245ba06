"""Pools in one worker process: each queue its own concurrency, and a concurrency that scales
between a minimum and a maximum with the work waiting."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, JobState, Pool, Worker
from conveyor.backends.base import ClaimedJob
from conveyor.errors import ConfigurationError
from conveyor.worker.pools import build_pools, parse_concurrency, parse_pool_spec
from tests.worker.harness import DEADLINE, wait_for


@dataclass
class Gate:
    """Jobs that hold their slot until the test opens the gate, counting who runs at once."""

    opened: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    most: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def hold(self, queue: str) -> None:
        with self.lock:
            self.running[queue] += 1
            self.most[queue] = max(self.most[queue], self.running[queue])
        try:
            assert self.opened.wait(60), "the test never opened the gate"
        finally:
            with self.lock:
                self.running[queue] -= 1


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def app(tmp_path: Path, gate: Gate) -> Iterator[Conveyor]:
    app = Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}")

    @app.task(name="hold")
    def hold(queue: str) -> None:
        gate.hold(queue)

    yield app
    gate.opened.set()
    app.close()


@contextmanager
def running(app: Conveyor, **options: Any) -> Iterator[Worker]:
    worker = app.worker(install_signal_handlers=False, **options)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert worker.started.wait(30), "the worker did not start"
        yield worker
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive(), "the worker did not stop"


def enqueue(app: Conveyor, queue: str, count: int) -> list[int]:
    hold = app.get_task("hold")
    specs = [hold.options(queue=queue).job(queue) for _ in range(count)]
    return [job.id for job in app.enqueue_many(specs)]


def test_each_queue_runs_at_its_own_concurrency(app: Conveyor, gate: Gate) -> None:
    ids = enqueue(app, "a", 6) + enqueue(app, "b", 6)
    with running(app, queues={"a": 2, "b": 3}) as worker:
        wait_for(lambda: gate.running == {"a": 2, "b": 3}, "2 jobs of a and 3 of b to run")
        assert worker.concurrency == 5
        gate.opened.set()
        wait_for(lambda: all(j.state is JobState.SUCCEEDED for j in map(app.get_job, ids)), "all")
    assert gate.most == {"a": 2, "b": 3}


def test_a_busy_queue_does_not_take_the_slots_of_another(app: Conveyor, gate: Gate) -> None:
    enqueue(app, "slow", 10)
    with running(app, pools=[Pool(("slow",), 2), Pool(("fast",), 1)]):
        wait_for(lambda: gate.running["slow"] == 2, "the slow pool to fill")
        # The slow queue keeps its two slots taken; a job of the other queue still runs.
        enqueue(app, "fast", 1)
        wait_for(lambda: gate.running["fast"] == 1, "the fast job to run beside them")
        gate.opened.set()
    assert gate.most == {"slow": 2, "fast": 1}


def test_a_pool_scales_up_while_jobs_wait_and_back_down_when_idle(
    app: Conveyor, gate: Gate
) -> None:
    ids = enqueue(app, "q", 10)
    with running(app, queues=["q"], concurrency=(1, 4), scale_down_after=0.05) as worker:
        (fetcher,) = worker.fetchers
        wait_for(lambda: gate.running["q"] == 4, "the pool to grow to its maximum")
        assert fetcher.limit == 4
        gate.opened.set()
        wait_for(lambda: all(j.state is JobState.SUCCEEDED for j in map(app.get_job, ids)), "all")
        wait_for(lambda: fetcher.limit == 1, "the idle pool to shrink to its minimum")
    assert gate.most["q"] == 4


def test_prefetched_jobs_wait_in_the_buffer_not_in_a_slot(app: Conveyor, gate: Gate) -> None:
    ids = enqueue(app, "q", 10)
    with running(app, concurrency=2, prefetch=3, grace=0.1) as worker:
        (fetcher,) = worker.fetchers
        # The buffer may fill before the second slot's thread has entered its job: wait for both.
        wait_for(
            lambda: len(fetcher.buffer) == 3 and gate.running["q"] == 2,
            "3 jobs to be prefetched and 2 to run",
        )
        assert gate.most["q"] == 2
        assert app.stats()["q"][JobState.RUNNING] == 5
    # Stopping put the prefetched jobs back at once, the running ones after the grace period,
    # none of them charged an attempt.
    assert {(j.state, j.attempts) for j in map(app.get_job, ids)} == {(JobState.QUEUED, 0)}


def test_nothing_is_prefetched_from_a_capped_queue(app: Conveyor, gate: Gate) -> None:
    app.set_concurrency_limit("q", 100)
    enqueue(app, "q", 10)
    with running(app, concurrency=2, prefetch=3, grace=0.1) as worker:
        (fetcher,) = worker.fetchers
        wait_for(lambda: gate.running["q"] == 2, "2 jobs to run")
        assert fetcher.prefetch_now() == 0
        assert not fetcher.buffer
        assert app.stats()["q"][JobState.RUNNING] == 2


@pytest.mark.parametrize("queues", [None, ["other", "q"]])
def test_a_burst_worker_waits_for_jobs_that_only_a_cap_holds_back(
    app: Conveyor, gate: Gate, monkeypatch: pytest.MonkeyPatch, queues: list[str] | None
) -> None:
    app.set_concurrency_limit("q", 1)
    ids = enqueue(app, "q", 2)
    burst = app.worker(queues=queues, burst=True, install_signal_handlers=False)
    came_back_empty = spy_on_empty_claims(app, monkeypatch)
    with running(app, queues=["q"], concurrency=1) as holder:
        wait_for(lambda: gate.running["q"] == 1, "the holder to take the cap's only slot")
        thread = threading.Thread(target=burst.run, daemon=True)
        thread.start()
        try:
            wait_for(
                lambda: came_back_empty.count(burst.id) >= 2 or not thread.is_alive(),
                "the burst worker to claim twice in vain, or to exit",
            )
            assert thread.is_alive(), "the burst worker exited with a job of its queue queued"
            # The holder takes nothing more once stopping: the job left is the burst's.
            holder.stop()
            wait_for(lambda: holder.fetchers[0].stopping, "the holder to stop claiming")
            gate.opened.set()
            thread.join(DEADLINE)
            assert not thread.is_alive(), "the burst worker did not exit once its jobs were done"
        finally:
            burst.stop()
            gate.opened.set()
    assert {app.get_job(job_id).state for job_id in ids} == {JobState.SUCCEEDED}
    assert (holder.counters.succeeded, burst.counters.succeeded) == (1, 1)
    assert gate.most["q"] == 1


def spy_on_empty_claims(app: Conveyor, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the workers whose claims came back empty, one entry per such claim."""
    claim = app.backend.claim
    empty: list[str] = []

    def claim_and_note(
        worker_id: str, queues: Sequence[str] | None, limit: int, lease: float
    ) -> list[ClaimedJob]:
        jobs = claim(worker_id, queues, limit, lease)
        if not jobs:
            empty.append(worker_id)
        return jobs

    monkeypatch.setattr(app.backend, "claim", claim_and_note)
    return empty


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b", ["a", "b"]),
        ("emails=10, reports=1-4", {"emails": 10, "reports": (1, 4)}),
        ("a=3-3", {"a": 3}),
    ],
)
def test_queue_specs_parse(text: str, expected: object) -> None:
    assert parse_pool_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "names nothing"),
        ("a=2,b", "has no concurrency"),
        ("a=many", "not a number or a range"),
        ("a=0", "integer >= 1"),
        ("a=5-2", "minimum <= maximum"),
    ],
)
def test_bad_queue_specs_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_pool_spec(text)


def test_bad_pools_are_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="more than one pool"):
        build_pools(None, 1, None, [Pool(("a",)), Pool(("a", "b"))])
    with pytest.raises(ConfigurationError, match="only pool"):
        build_pools(None, 1, None, [Pool(None), Pool(("a",))])
    with pytest.raises(ConfigurationError, match="either pools or queues"):
        build_pools(["a"], 1, None, [Pool(("b",))])
    with pytest.raises(ConfigurationError, match="non-empty list"):
        build_pools("a", 1, None, None)
    with pytest.raises(ConfigurationError, match="concurrency must be"):
        Pool(("a",), (0, 3))
    assert parse_concurrency(" 2-20 ") == (2, 20)
