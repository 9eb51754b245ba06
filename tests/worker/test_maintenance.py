"""The maintenance service in this process, on a fake clock: who leads, handing the lease on at
a clean stop, and when silence of other workers starts to count."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.backends.base import Backend
from conveyor.worker.maintenance import LEADERSHIP, Maintenance, leader_ttl
from tests.support import FakeClock, sqlite_backend

INTERVAL = 1.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(tmp_path: Path, clock: FakeClock) -> Iterator[Backend]:
    with sqlite_backend(tmp_path, clock, {}) as engine:
        yield engine


async def direct(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def maintenance(backend: Backend, worker_id: str) -> Maintenance:
    return Maintenance(
        backend, direct, lambda: None, worker_id=worker_id, interval=INTERVAL, retention=0
    )


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
