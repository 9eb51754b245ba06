"""The tasks the benchmarks run, importable by worker processes (``bench_app:app``)."""

from __future__ import annotations

import asyncio
import os
import time

from conveyor import Conveyor, JobContext

app = Conveyor(os.environ.get("CONVEYOR_BENCH_URL"))


@app.task(name="noop")
def noop() -> None:
    return None


@app.task(name="started_at")
def started_at() -> float:
    """Returns the time the task started, for pickup latency."""
    return time.time()


@app.task(name="started_cpu")
def started_cpu() -> list[float]:
    """When the task started, and the CPU seconds (user + system) its process had used by then:
    the start-up's cost, which unlike its wall time holds up on a loaded machine."""
    return [time.time(), time.process_time()]


@app.task(name="io_sleep")
async def io_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


# --- cancel latency: jobs that run until they are cancelled -----------------------------------


@app.task(name="wait_async")
async def wait_async() -> None:
    await asyncio.sleep(3600)


@app.task(name="wait_thread", pass_context=True)
def wait_thread(ctx: JobContext) -> None:
    """A thread cannot be interrupted: it stops when it sees ``ctx.cancelled``."""
    while not ctx.cancelled:
        time.sleep(0.005)
    ctx.raise_if_cancelled()


@app.task(name="spin_process", isolation="process")
def spin_process() -> None:
    """Deaf to cancellation: only stopping its process ends it."""
    while True:
        pass
