"""collector_paused: the cyclic collector is off inside, back as it was after."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from conveyor.gcpause import BIG_BATCH, collector_paused, pause_for


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_pauses_and_resumes() -> None:
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_resumes_after_an_error() -> None:
    gc.enable()
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("boom")
    assert gc.isenabled()


def test_leaves_a_collector_that_was_off_off() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_nested_and_concurrent_pauses_resume_once_the_last_ends() -> None:
    gc.enable()
    inside = threading.Event()
    leave = threading.Event()

    def other() -> None:
        with collector_paused():
            inside.set()
            leave.wait(timeout=10)

    thread = threading.Thread(target=other)
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        thread.start()
        assert inside.wait(timeout=10)
    assert not gc.isenabled(), "the other thread's pause is still on"
    leave.set()
    thread.join(timeout=10)
    assert gc.isenabled()


def test_only_big_batches_pause_the_collector() -> None:
    assert gc.isenabled()
    with pause_for(BIG_BATCH - 1):
        assert gc.isenabled()
    with pause_for(BIG_BATCH):
        assert not gc.isenabled()
    assert gc.isenabled()
