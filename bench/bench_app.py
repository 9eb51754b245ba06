"""The tasks the benchmarks run, importable by worker processes (``bench_app:app``)."""

from __future__ import annotations

import asyncio
import os
import time

from conveyor import Conveyor

app = Conveyor(os.environ.get("CONVEYOR_BENCH_URL"))


@app.task(name="noop")
def noop() -> None:
    return None


@app.task(name="started_at")
def started_at() -> float:
    """Returns the time the task started, for pickup latency."""
    return time.time()


@app.task(name="io_sleep")
async def io_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
