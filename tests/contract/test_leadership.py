"""Contract: leases on maintenance duties — one holder at a time, renewed by it, taken over once
it lapses (in database time) or at once when its holder gives it up or deregisters."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from conveyor.backends.base import Backend
from conveyor.worker_info import WorkerRegistration
from tests.support import FakeClock

TTL = 10.0
DUTY = "maintenance"


def test_the_first_taker_holds_the_lease_and_others_do_not(backend: Backend) -> None:
    assert backend.acquire_leadership(DUTY, "a", TTL) is True
    assert backend.acquire_leadership(DUTY, "b", TTL) is False
    assert backend.acquire_leadership(DUTY, "a", TTL) is True, "its holder renews it"
    assert backend.acquire_leadership(DUTY, "b", TTL) is False


def test_a_lapsed_lease_passes_to_the_next_taker(backend: Backend, clock: FakeClock) -> None:
    backend.acquire_leadership(DUTY, "a", TTL)
    clock.advance(TTL - 1.0)
    assert backend.acquire_leadership(DUTY, "b", TTL) is False
    clock.advance(2.0)
    assert backend.acquire_leadership(DUTY, "b", TTL) is True, "a's lease lapsed"
    assert backend.acquire_leadership(DUTY, "a", TTL) is False, "a comes back too late"
    assert backend.acquire_leadership(DUTY, "b", TTL) is True


def test_each_renewal_pushes_the_expiry(backend: Backend, clock: FakeClock) -> None:
    backend.acquire_leadership(DUTY, "a", TTL)
    for _ in range(5):
        clock.advance(TTL - 2.0)
        assert backend.acquire_leadership(DUTY, "a", TTL) is True
        assert backend.acquire_leadership(DUTY, "b", TTL) is False
    clock.advance(TTL + 1.0)
    assert backend.acquire_leadership(DUTY, "b", TTL) is True


def test_the_ttl_is_the_takers_own(backend: Backend, clock: FakeClock) -> None:
    backend.acquire_leadership(DUTY, "a", 100.0)
    clock.advance(TTL + 1.0)
    assert backend.acquire_leadership(DUTY, "b", TTL) is False
    assert backend.acquire_leadership(DUTY, "a", 1.0) is True
    clock.advance(2.0)
    assert backend.acquire_leadership(DUTY, "b", TTL) is True


def test_a_released_lease_is_free_at_once(backend: Backend) -> None:
    backend.acquire_leadership(DUTY, "a", TTL)
    backend.release_leadership(DUTY, "b")  # not b's to give
    assert backend.acquire_leadership(DUTY, "b", TTL) is False
    backend.release_leadership(DUTY, "a")
    assert backend.acquire_leadership(DUTY, "b", TTL) is True
    backend.release_leadership(DUTY, "a")  # no longer a's: nothing happens
    assert backend.acquire_leadership(DUTY, "a", TTL) is False


def test_leases_of_different_duties_are_independent(backend: Backend) -> None:
    assert backend.acquire_leadership("rescue", "a", TTL) is True
    assert backend.acquire_leadership("prune", "b", TTL) is True
    assert backend.acquire_leadership("rescue", "b", TTL) is False
    assert backend.acquire_leadership("prune", "a", TTL) is False


def test_a_worker_that_deregisters_hands_on_its_leases(backend: Backend) -> None:
    backend.register_worker(
        WorkerRegistration(
            id="a",
            host="h",
            pid=1,
            queues=None,
            concurrency=1,
            beat_interval=1.0,
            dead_after=5.0,
        )
    )
    backend.acquire_leadership("rescue", "a", TTL)
    backend.acquire_leadership("prune", "a", TTL)
    backend.acquire_leadership("other", "c", TTL)
    backend.deregister_worker("a")
    assert backend.acquire_leadership("rescue", "b", TTL) is True
    assert backend.acquire_leadership("prune", "b", TTL) is True
    assert backend.acquire_leadership("other", "b", TTL) is False


def test_takers_racing_for_a_free_lease_get_one_holder(backend: Backend, clock: FakeClock) -> None:
    takers = [f"w{i}" for i in range(8)]
    for _ in range(3):
        start = threading.Barrier(len(takers))

        def take(holder: str, start: threading.Barrier = start) -> bool:
            start.wait(timeout=30)
            return backend.acquire_leadership(DUTY, holder, TTL)

        with ThreadPoolExecutor(len(takers)) as pool:
            won = [h for h, held in zip(takers, pool.map(take, takers), strict=True) if held]
        assert len(won) == 1, won
        clock.advance(TTL + 1.0)
