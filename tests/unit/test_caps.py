"""The set of capped queues a claim consults, kept for a second; and the validation of caps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.backends.caps import CAPS_TTL, CappedQueues
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.backends.sqlite.connection import Q
from conveyor.errors import ConfigurationError
from conveyor.settings import Settings
from tests.support import FakeClock, new_job


class Store:
    """Stands in for the caps table: counts how often it is read."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self.reads = 0

    def load(self) -> set[str]:
        self.reads += 1
        return set(self.names)


def test_the_answer_is_kept_for_the_ttl() -> None:
    clock, store = FakeClock(), Store("api")
    capped = CappedQueues(clock)
    assert capped.get(store.load) == {"api"}
    store.names.add("mail")
    clock.advance(CAPS_TTL * 0.9)
    assert capped.get(store.load) == {"api"}
    assert store.reads == 1
    clock.advance(CAPS_TTL * 0.1)
    assert capped.get(store.load) == {"api", "mail"}
    assert store.reads == 2


def test_no_caps_is_kept_too() -> None:
    clock, store = FakeClock(), Store()
    capped = CappedQueues(clock)
    for _ in range(100):
        assert capped.get(store.load) == frozenset()
    assert store.reads == 1


def test_forget_reads_again_at_once() -> None:
    clock, store = FakeClock(), Store()
    capped = CappedQueues(clock)
    capped.get(store.load)
    store.names.add("api")
    capped.forget()
    assert capped.get(store.load) == {"api"}


def test_a_clock_that_goes_back_reads_again() -> None:
    clock, store = FakeClock(), Store()
    capped = CappedQueues(clock)
    capped.get(store.load)
    store.names.add("api")
    clock.advance(-3600.0)
    assert capped.get(store.load) == {"api"}


def test_a_read_that_began_before_forget_is_not_kept() -> None:
    """A claim reading the old set while this process changes a cap must not keep the old
    answer for a second."""
    clock, store = FakeClock(), Store()
    capped = CappedQueues(clock)

    def load_then_change() -> set[str]:
        old = store.load()
        store.names.add("api")
        capped.forget()
        return old

    assert capped.get(load_then_change) == frozenset()
    assert capped.get(store.load) == {"api"}


@pytest.mark.parametrize(
    ("queue", "max_running", "message"),
    [
        ("", 3, "queue name must be 1-200 characters"),
        ("q" * 201, 3, "queue name must be 1-200 characters"),
        ("a\x00b", 3, "queue name must not contain a NUL character"),
        (7, 3, "queue name must be 1-200 characters"),
        ("api", 0, "max_running must be a whole number from 1"),
        ("api", -1, "max_running must be a whole number from 1"),
        ("api", 2**31, "max_running must be a whole number from 1"),
        ("api", 2.0, "max_running must be a whole number from 1"),
        ("api", "3", "max_running must be a whole number from 1"),
        ("api", True, "max_running must be a whole number from 1"),
    ],
)
def test_bad_caps_are_refused_before_any_write(
    tmp_path: Path, queue: Any, max_running: Any, message: str
) -> None:
    with Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}") as app:
        with pytest.raises(ConfigurationError, match=message):
            app.set_concurrency_limit(queue, max_running)
        assert app.concurrency_limits() == {}


def test_the_largest_cap_is_stored(tmp_path: Path) -> None:
    with Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}") as app:
        app.set_concurrency_limit("api", 2**31 - 1)
        assert app.concurrency_limits() == {"api": 2**31 - 1}


# --- SQLite query plans -------------------------------------------------------------------------


@pytest.fixture
def busy_store(tmp_path: Path) -> Iterator[SQLiteBackend]:
    """Queue "done" holds only finished jobs, "busy" running and queued ones."""
    backend = SQLiteBackend(Settings.load(env={}, url=f"sqlite:///{tmp_path / 'jobs.db'}"))
    backend.enqueue_many([new_job(queue="done") for _ in range(2000)])
    runs = backend.claim("w", None, 2000, 30.0)
    backend.finish_many([Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED) for r in runs])
    backend.enqueue_many([new_job(queue="busy") for _ in range(500)])
    backend.claim("w", None, 200, 30.0)
    yield backend
    backend.close()


def plan(backend: SQLiteBackend, query: str, params: dict[str, Any]) -> str:
    rows = backend._reader.raw.execute(f"EXPLAIN QUERY PLAN {Q[query]}", params).fetchall()
    return "\n".join(str(row["detail"]) for row in rows)


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
def test_claims_around_caps_use_small_indexes(busy_store: SQLiteBackend, analyzed: bool) -> None:
    """Listing the queues with ready jobs steps from queue to queue among ready jobs only (never
    over a queue's finished jobs), counting a queue's running jobs reads them alone, and rescue
    walks the running jobs, not the table."""
    if analyzed:
        busy_store._writer.raw.execute("ANALYZE")
    listing = plan(busy_store, "ready_queues", {})
    assert "SEARCH j USING INDEX conveyor_jobs_ready_by_queue (queue>?)" in listing
    assert "SCAN conveyor_jobs USING INDEX conveyor_jobs_ready_by_queue" in listing
    rooms = plan(busy_store, "queue_gates", {"queues": '["busy"]', "now": 0.0})
    assert "SEARCH j USING INDEX conveyor_jobs_leases (queue=?)" in rooms
    rescue = plan(
        busy_store, "rescue_expired", {"now": 0.0, "exclude": None, "boot": "b", "uptime": 0.0}
    )
    # A walk of the whole index, or after ANALYZE a skip-scan of it by queue.
    assert "conveyor_jobs USING INDEX conveyor_jobs_leases" in rescue
