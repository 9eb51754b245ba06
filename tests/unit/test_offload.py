"""The threads that run the blocking half of the async API (conveyor.offload)."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading

import pytest

from conveyor.offload import Offload

REQUEST = contextvars.ContextVar("REQUEST", default="none")


def test_the_call_runs_on_another_thread_and_its_result_comes_back() -> None:
    offload = Offload("test-offload", max_threads=2)

    async def main() -> tuple[int, int]:
        return await offload.run(lambda: (threading.get_ident(), 42))

    thread, answer = asyncio.run(main())
    assert answer == 42
    assert thread != threading.get_ident()


def test_an_exception_reaches_the_caller_as_it_was_raised() -> None:
    offload = Offload("test-offload", max_threads=1)

    def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        asyncio.run(offload.run(fail))


def test_the_call_sees_the_callers_context() -> None:
    offload = Offload("test-offload", max_threads=1)

    async def main() -> str:
        REQUEST.set("request-7")
        return await offload.run(REQUEST.get)

    assert asyncio.run(main()) == "request-7"


def test_calls_run_side_by_side_up_to_the_limit() -> None:
    offload = Offload("test-offload", max_threads=3)
    inside = threading.Barrier(3, timeout=10)

    async def main() -> list[int]:
        # Each call waits until three are inside at once: only three threads get there.
        return await asyncio.gather(*(offload.run(inside.wait) for _ in range(3)))

    assert sorted(asyncio.run(main())) == [0, 1, 2]


def test_a_cancelled_caller_leaves_the_threads_usable() -> None:
    offload = Offload("test-offload", max_threads=1)
    release = threading.Event()

    async def main() -> str:
        stuck = asyncio.ensure_future(offload.run(lambda: release.wait(10)))
        await asyncio.sleep(0)
        stuck.cancel()
        release.set()
        return await offload.run(lambda: "after")

    assert asyncio.run(main()) == "after"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() of a threaded process
def test_a_forked_child_starts_threads_of_its_own() -> None:
    offload = Offload("test-offload", max_threads=1)
    assert asyncio.run(offload.run(lambda: 1)) == 1  # the parent has its thread now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            result = asyncio.run(asyncio.wait_for(offload.run(lambda: 2), 10))
            os.write(write, str(result).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as answer:
        assert answer.read() == "2"
