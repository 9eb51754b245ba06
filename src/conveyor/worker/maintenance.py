"""Maintenance duties: rescue runs whose lease expired, promote jobs whose time has come, and
prune finished jobs past their retention. Every duty is a single idempotent statement, so
several workers sweeping the same database at once is safe."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from conveyor.backends.base import Backend
from conveyor.errors import ConveyorError

log = logging.getLogger("conveyor.worker")

PRUNE_EVERY = 60.0


class Maintenance:
    def __init__(
        self,
        backend: Backend,
        db_call: Callable[..., Awaitable[Any]],
        on_rescued: Callable[[], None],
        *,
        worker_id: str,
        interval: float,
        retention: float,
    ) -> None:
        self._backend = backend
        self._db_call = db_call
        self._on_rescued = on_rescued
        self._worker_id = worker_id
        self._interval = interval
        self._retention = retention
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_prune = 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="maintenance")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def sweep(self) -> None:
        report = await self._db_call(self._backend.rescue_expired, self._worker_id)
        if report.requeued or report.dead or report.cancelled:
            log.warning(
                "rescued expired leases: %d back in the queue, %d dead, %d cancelled",
                len(report.requeued),
                len(report.dead),
                len(report.cancelled),
            )
            self._on_rescued()
        if self._retention and time.monotonic() - self._last_prune >= PRUNE_EVERY:
            self._last_prune = time.monotonic()
            while await self._db_call(self._backend.prune, self._retention) > 0:
                if self._stop.is_set():
                    break

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.sweep()
            except ConveyorError as exc:
                log.warning("maintenance sweep failed, will retry: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval)
