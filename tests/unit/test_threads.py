"""The worker's pool of daemon threads: every call runs, on up to ``size`` threads at once,
whether the threads start as work comes or all ahead of it."""

from __future__ import annotations

import functools
import threading

import pytest

from conveyor.worker.threads import DaemonThreadPool
from tests.worker.harness import wait_for


@pytest.mark.parametrize("prestart", [False, True], ids=["on_demand", "prestarted"])
def test_blocking_calls_each_get_a_thread_up_to_the_size(prestart: bool) -> None:
    pool = DaemonThreadPool(4, name="test")
    if prestart:
        pool.prestart()
    release = threading.Event()
    running: list[int] = []
    lock = threading.Lock()

    def call(n: int) -> None:
        with lock:
            running.append(n)
        release.wait()

    for n in range(6):
        pool.post(functools.partial(call, n))
    wait_for(lambda: len(running) == 4, "four calls to run at once")
    assert len(running) == 4, "no more at once than the pool's size"
    release.set()
    wait_for(lambda: len(running) == 6, "the two calls that waited for a thread")
    pool.shutdown()
    for thread in pool._threads:
        thread.join(10)
        assert not thread.is_alive()


def test_prestarted_threads_wait_for_work_and_take_it() -> None:
    pool = DaemonThreadPool(8, name="test")
    pool.prestart()
    wait_for(lambda: len(pool._threads) == 8 and pool._idle == 8, "eight idle threads")
    futures = [pool.submit(functools.partial(pow, n, 2)) for n in range(100)]
    assert [future.result(10) for future in futures] == [n * n for n in range(100)]
    assert len(pool._threads) == 8, "no thread started beyond the ones prestarted"
    pool.shutdown()
    for thread in pool._threads:
        thread.join(10)
        assert not thread.is_alive()


def test_a_pool_shut_down_while_its_threads_start_ends_them_all() -> None:
    pool = DaemonThreadPool(50, name="test")
    pool.prestart()
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.post(lambda: None)
    wait_for(
        lambda: all(t.ident is not None and not t.is_alive() for t in list(pool._threads)),
        "every thread started to end",
    )
