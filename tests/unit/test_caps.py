"""The set of capped queues a claim consults, kept for a second; and the validation of caps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.backends.caps import CAPS_TTL, CappedQueues
from conveyor.errors import ConfigurationError
from tests.support import FakeClock


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
        ("a\x00b", 3, "queue name must be 1-200 characters"),
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
            app.set_queue_limit(queue, max_running)
        assert app.queue_limits() == {}


def test_the_largest_cap_is_stored(tmp_path: Path) -> None:
    with Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}") as app:
        app.set_queue_limit("api", 2**31 - 1)
        assert app.queue_limits() == {"api": 2**31 - 1}
