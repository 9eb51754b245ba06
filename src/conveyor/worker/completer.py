"""The completer writes outcomes back in batches, and keeps them while the database is away.

Outcomes are written by one flush loop: whatever piled up while the previous batch was being
written goes in the next one, so batches grow with load and a lone job is written at once. When
a write fails the batch goes back to the front of the buffer and is retried with capped
backoff: a finished job is never forgotten while this process lives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from conveyor.backends.base import Backend, FinishResult, Outcome
from conveyor.errors import ConveyorError

log = logging.getLogger("conveyor.worker")
T = TypeVar("T")
DbCall = Callable[..., Awaitable[T]]


class Completer:
    def __init__(
        self,
        backend: Backend,
        db_call: Callable[..., Awaitable[list[FinishResult]]],
        on_written: Callable[[Sequence[Outcome], Sequence[FinishResult]], None],
        *,
        max_batch: int = 1000,
        max_backoff: float = 5.0,
    ) -> None:
        self._backend = backend
        self._db_call = db_call
        self._on_written = on_written
        self._max_batch = max_batch
        self._max_backoff = max_backoff
        self._buffer: list[Outcome] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    @property
    def pending(self) -> int:
        return len(self._buffer)

    @property
    def idle(self) -> bool:
        """True when every submitted outcome has been written."""
        return self._idle.is_set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="completer")

    def submit(self, outcome: Outcome) -> None:
        self._buffer.append(outcome)
        self._idle.clear()
        self._wake.set()

    def submit_many(self, outcomes: Sequence[Outcome]) -> None:
        if outcomes:
            self._buffer.extend(outcomes)
            self._idle.clear()
            self._wake.set()

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._buffer:
                batch = self._buffer[: self._max_batch]
                del self._buffer[: len(batch)]
                try:
                    results = await self._db_call(self._backend.finish_many, batch)
                except ConveyorError as exc:
                    self._buffer[:0] = batch
                    self.failures += 1
                    log.warning(
                        "could not write %d outcome(s), retrying in %.2fs: %s",
                        len(batch),
                        backoff,
                        exc,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
                    continue
                backoff = 0.05
                self._on_written(batch, results)
            self._idle.set()
            if self._closing:
                return

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every submitted outcome is written; False if ``timeout`` ran out first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float | None = None) -> bool:
        written = await self.drain(timeout)
        self._closing = True
        self._wake.set()
        if self._task is not None:
            if written:
                await self._task
            else:
                self._task.cancel()
        return written
