"""The maintenance service in this process, on a fake clock: who leads, handing the lease on at
a clean stop, when silence of other workers starts to count, and workers of this machine whose
process is gone."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.backends.base import Backend
from conveyor.job import JobState
from conveyor.worker.maintenance import LEADERSHIP, Maintenance, leader_ttl
from conveyor.worker_info import WorkerRegistration, WorkerState
from tests.contract.helpers import enqueue
from tests.support import FakeClock, sqlite_backend

INTERVAL = 1.0
HERE = "boot-1/pid:[4026531836]"
DEAD_AFTER = 15.0
LONG_LEASE = 600.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(tmp_path: Path, clock: FakeClock) -> Iterator[Backend]:
    with sqlite_backend(tmp_path, clock, {}) as engine:
        yield engine


async def direct(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def maintenance(backend: Backend, worker_id: str, machine: str | None = HERE) -> Maintenance:
    return Maintenance(
        backend,
        direct,
        lambda: None,
        worker_id=worker_id,
        machine=machine,
        interval=INTERVAL,
        retention=0,
    )


def register(backend: Backend, worker_id: str, pid: int, machine: str | None = HERE) -> None:
    backend.register_worker(
        WorkerRegistration(
            id=worker_id,
            host="h",
            pid=pid,
            queues=None,
            concurrency=1,
            beat_interval=5.0,
            dead_after=DEAD_AFTER,
            machine=machine,
        )
    )


@pytest.fixture
def exited_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_one_leads_until_its_lease_lapses(backend: Backend, clock: FakeClock) -> None:
    a, b = maintenance(backend, "a"), maintenance(backend, "b")

    async def scenario() -> None:
        assert await a.lead() is True
        assert await b.lead() is False
        clock.advance(leader_ttl(INTERVAL) + 1.0)  # a stops renewing (killed, or stalled)
        assert await b.lead() is True
        assert await a.lead() is False
        assert (a.leading, b.leading) == (False, True)

    asyncio.run(scenario())


def test_a_clean_stop_hands_the_lease_on_at_once(backend: Backend, clock: FakeClock) -> None:
    a, b = maintenance(backend, "a"), maintenance(backend, "b")

    async def scenario() -> None:
        a.start()
        await asyncio.sleep(0)  # a's first sweep: it takes the lease
        assert a.leading
        await a.stop()
        assert await b.lead() is True, "without waiting for a's lease to lapse"

    asyncio.run(scenario())
    assert backend.acquire_leadership(LEADERSHIP, "a", 10.0) is False


def test_the_first_sweep_waits_for_the_first_claims(backend: Backend, clock: FakeClock) -> None:
    """A starting worker's first claims do not queue behind a sweep: maintenance begins once
    they are over (or at its stop, if they never are)."""
    a = maintenance(backend, "a")

    async def scenario() -> None:
        claimed = asyncio.Event()
        a.start(after=[claimed])
        for _ in range(5):
            await asyncio.sleep(0)
        assert not a.leading, "no sweep before the first claim"
        claimed.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert a.leading
        await a.stop()

        never = asyncio.Event()
        b = maintenance(backend, "b")
        b.start(after=[never])
        await asyncio.wait_for(b.stop(), 5.0)  # a stop does not wait for the claims
        assert not b.leading

    asyncio.run(scenario())


def test_reachable_since_starts_again_after_a_break(backend: Backend, clock: FakeClock) -> None:
    a = maintenance(backend, "a")

    async def scenario() -> None:
        await a.lead()
        start = clock.now
        assert a.reachable_since == start
        for _ in range(5):
            clock.advance(INTERVAL)
            await a.lead()
        assert a.reachable_since == start, "sweeps on schedule: no break"
        clock.advance(10 * INTERVAL)
        await a.lead()
        assert a.reachable_since == clock.now

    asyncio.run(scenario())


def test_a_worker_not_leading_declares_its_machines_gone_workers_dead(
    backend: Backend, clock: FakeClock, exited_pid: int
) -> None:
    register(backend, "gone", exited_pid)
    register(backend, "alive", os.getpid())
    register(backend, "elsewhere", exited_pid, machine="boot-2/pid:[4026531836]")
    job_id = enqueue(backend)
    assert [c.id for c in backend.claim("gone", None, 1, LONG_LEASE)] == [job_id]
    assert backend.acquire_leadership(LEADERSHIP, "gone", LONG_LEASE)
    b = maintenance(backend, "b")

    async def scenario() -> None:
        b.start()
        await asyncio.sleep(0)  # b's first sweep
        assert not b.leading, "gone held the lease"
        await b.stop()
        assert await b.lead() is True, "gone's lease was freed with it"

    asyncio.run(scenario())
    assert backend.get(job_id).state is JobState.RETRYING, "no lease or silence waited out"
    states = {w.id: w.state for w in backend.list_workers()}
    assert states == {
        "gone": WorkerState.DEAD,
        "alive": WorkerState.RUNNING,
        "elsewhere": WorkerState.RUNNING,
    }


def test_at_start_up_only_the_gone_are_declared_dead(
    backend: Backend, clock: FakeClock, exited_pid: int
) -> None:
    register(backend, "silent", os.getpid())
    clock.advance(DEAD_AFTER * 10)
    register(backend, "gone", exited_pid)
    b = maintenance(backend, "b")
    asyncio.run(b.reap_gone())
    states = {w.id: w.state for w in backend.list_workers()}
    assert states == {"silent": WorkerState.RUNNING, "gone": WorkerState.DEAD}, (
        "before its first sweep a worker cannot tell an outage from silence"
    )


def test_a_worker_of_unknown_machine_judges_nobody_by_pid(
    backend: Backend, clock: FakeClock, exited_pid: int
) -> None:
    register(backend, "gone", exited_pid, machine=None)
    register(backend, "gone-here", exited_pid)
    asyncio.run(maintenance(backend, "b", machine=None).reap_gone())
    assert {w.state for w in backend.list_workers()} == {WorkerState.RUNNING}


def test_a_sweep_counts_enqueued_jobs_folds_and_prunes_minutes(
    backend: Backend, clock: FakeClock
) -> None:
    start = clock.now
    keeper = Maintenance(
        backend,
        direct,
        lambda: None,
        worker_id="a",
        machine=None,
        interval=INTERVAL,
        retention=0,
        stats_retention=3600.0,
    )
    for _ in range(3):
        enqueue(backend, task="t")

    async def sweep() -> None:
        keeper._last_tally = -1e9  # the tally's turn, whatever the monotonic clock says
        await keeper.sweep()

    clock.advance(61.0)
    asyncio.run(sweep())
    [counted] = backend.minute_stats(start)
    assert counted.enqueued == 3
    clock.advance(2 * 3600.0)
    asyncio.run(sweep())
    assert backend.minute_stats(start) == [], "folded, then pruned past stats_retention"
    [total] = backend.stats_totals()
    assert total.enqueued == 3
