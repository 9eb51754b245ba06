"""An idle worker's claim on a wake-up (conveyor.worker.wakeup): on Redis the listener thread
claims at once, and leaves a waiting suspect to the worker's own suspect claim; every engine's
``claim_unless_suspects`` claims nothing while a suspect waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.backends.base import Backend
from conveyor.job import JobState
from conveyor.worker_info import WorkerRegistration
from tests.contract.helpers import LEASE, enqueue, succeed
from tests.support import FakeClock, app_options


def make_suspect(backend: Backend, queue: str = "default") -> int:
    """A job whose worker died while it ran beside another: a suspect, due now."""
    backend.register_worker(
        WorkerRegistration(
            id="gone",
            host="host",
            pid=1,
            machine=None,
            queues=None,
            concurrency=2,
            beat_interval=1.0,
            dead_after=5.0,
        )
    )
    first = enqueue(backend, queue=queue)
    enqueue(backend, queue=queue)
    assert len(backend.claim("gone", [queue], 2, LEASE)) == 2
    assert backend.reap_dead_workers(known_dead=["gone"]).workers == ["gone"]
    assert backend.get(first).suspect
    return first


def test_claim_unless_suspects_leaves_a_waiting_suspect_alone(
    backend: Backend, clock: FakeClock
) -> None:
    make_suspect(backend, queue="sick")
    enqueue(backend, queue="default")
    assert backend.claim_unless_suspects("w", None, 10, LEASE) == []
    # The worker's own suspect claims take them one after another ...
    for _ in range(2):
        suspect = backend.claim_suspect("w", None, LEASE)
        assert suspect is not None
        succeed(backend, suspect)
    # ... and then the ordinary job is claimed.
    claimed = backend.claim_unless_suspects("w", None, 10, LEASE)
    assert [job.queue for job in claimed] == ["default"]


@pytest.fixture
def redis_app(tmp_path: Path) -> Iterator[Conveyor]:
    with app_options("redis", tmp_path) as options, Conveyor(**options) as app:
        yield app


def run_worker(app: Conveyor, **options: Any) -> tuple[Any, threading.Thread]:
    worker = app.worker(concurrency=2, install_signal_handlers=False, **options)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.started.wait(10)
    return worker, thread


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_an_idle_redis_worker_claims_on_its_listener_thread(
    redis_app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = redis_app.backend
    threads: list[str] = []
    claim = backend.claim_unless_suspects

    def recording(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return claim(*args)

    monkeypatch.setattr(backend, "claim_unless_suspects", recording)
    task = redis_app.task(name="ping")(lambda: "pong")
    worker, thread = run_worker(redis_app)
    producer = Conveyor(redis_app.settings.url, redis_prefix=redis_app.settings.redis_prefix)
    ping = producer.task(name="ping")(lambda: "pong")
    try:
        warm = task.enqueue()
        wait_for(lambda: redis_app.get_job(warm.id).state is JobState.SUCCEEDED)
        time.sleep(0.2)  # idle: the fetcher waits, armed
        # Another process's enqueue (another client: its PUBLISH reaches the listener).
        jobs = [ping.enqueue() for _ in range(3)]
        for job in jobs:
            wait_for(lambda job=job: redis_app.get_job(job.id).state is JobState.SUCCEEDED)
            time.sleep(0.05)
        assert any(name.startswith("conveyor-subscribe-") for name in threads), threads
    finally:
        producer.close()
        worker.stop()
        thread.join(10)


def test_a_suspect_elsewhere_does_not_hold_up_an_idle_workers_jobs(redis_app: Conveyor) -> None:
    """The wake thread's claim stands back for a suspect in any queue; the worker's own suspect
    claim finds none in its queues, and its ordinary claim takes the job."""
    task = redis_app.task(name="ping")(lambda: "pong")
    worker, thread = run_worker(redis_app, queues=["default"])
    producer = Conveyor(redis_app.settings.url, redis_prefix=redis_app.settings.redis_prefix)
    ping = producer.task(name="ping")(lambda: "pong")
    try:
        warm = task.enqueue()
        wait_for(lambda: redis_app.get_job(warm.id).state is JobState.SUCCEEDED)
        suspect = make_suspect(producer.backend, queue="elsewhere")
        job = ping.enqueue()
        wait_for(lambda: redis_app.get_job(job.id).state is JobState.SUCCEEDED)
        assert redis_app.get_job(suspect).state is JobState.RETRYING
    finally:
        producer.close()
        worker.stop()
        thread.join(10)
