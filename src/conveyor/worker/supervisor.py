"""Run and supervise N worker processes: ``conveyor worker --processes N``.

Each child is a full worker (the same command with the hidden ``--supervised`` flag instead of
``--processes``); ``--processes 1`` supervises one. One that dies is started again after a short
backoff that doubles up to a cap, so a worker that crashes at start does not spin; a child that
ran for a while before dying restarts after the shortest wait again. A child that exits with
status 0 (burst mode found nothing to do, or it was stopped on its own) stays down.

SIGTERM or SIGINT is forwarded once to every child, which then shuts down gracefully; a second
signal SIGKILLs them all. Each child runs in its own process group so that Ctrl-C, which the
terminal sends to the whole foreground group, reaches the workers once (through us) instead of
twice -- a worker takes a second signal as "exit at once".

After a requested stop (SIGTERM/SIGINT) the supervisor exits 0 unless a worker failed during
the stop: a slot that was waiting to restart a worker that crashed earlier counts as stopped,
not failed, so a service manager records a clean stop as one. A second signal (workers killed)
exits 128 + the signal number; without any stop request, it exits 0 once every child has exited
with status 0, else 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
from collections.abc import Sequence

log = logging.getLogger("conveyor.supervisor")


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class Supervisor:
    def __init__(
        self,
        argv: Sequence[str],
        processes: int,
        *,
        min_backoff: float = 0.5,
        max_backoff: float = 10.0,
        stable_after: float = 10.0,
        install_signal_handlers: bool = True,
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self.argv = list(argv)
        self.processes = processes
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.install_signal_handlers = install_signal_handlers
        #: (slot, pid, loop time) of every start, for logs and tests.
        self.starts: list[tuple[int, int, float]] = []
        #: Slots whose worker died and that wait (backoff) to start the next one.
        self.waiting: set[int] = set()
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._signal: int | None = None
        self._forced = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    def run(self) -> int:
        """Run until every child has exited; the exit status for the command."""
        return asyncio.run(self._run())

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Like receiving ``signum`` (thread-safe): the first stops gracefully, a second kills."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_signal, signum)

    async def _run(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        installed: list[int] = []
        if self.install_signal_handlers:
            for handled in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(handled, self._on_signal, int(handled))
                installed.append(handled)
        log.info("running %d worker processes", self.processes)
        try:
            codes = await asyncio.gather(*(self._keep(slot) for slot in range(self.processes)))
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
        if self._forced and self._signal is not None:
            return 128 + self._signal
        clean = all(code == 0 for code in codes)
        log.info("all workers exited%s", "" if clean else " (not all cleanly)")
        return 0 if clean else 1

    def _on_signal(self, signum: int) -> None:
        assert self._stop_event is not None
        name = signal.Signals(signum).name
        if self._signal is None:
            self._signal = signum
            self._stop_event.set()
            log.info("received %s, stopping %d worker(s)", name, len(self._children))
            for child in self._children.values():
                self._send(child, signum)
            return
        self._forced = True
        log.warning("received %s again: killing every worker", name)
        for child in self._children.values():
            self._send(child, signal.SIGKILL)

    @staticmethod
    def _send(child: asyncio.subprocess.Process, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    async def _keep(self, slot: int) -> int:
        """Keep one worker running in ``slot``; the exit status of its last worker, or 0 if
        the slot was stopped while waiting to restart one."""
        assert self._loop is not None and self._stop_event is not None
        backoff = self.min_backoff
        while self._signal is None:
            started = self._loop.time()
            try:
                # Own process group: see the module docstring.
                child = await asyncio.create_subprocess_exec(
                    *self.argv, stdin=subprocess.DEVNULL, process_group=0
                )
            except OSError as exc:
                log.error("cannot start worker %d: %s", slot + 1, exc)
            else:
                self._children[slot] = child
                self.starts.append((slot, child.pid, started))
                log.info("worker %d started, pid %d", slot + 1, child.pid)
                if self._signal is not None:  # a signal came while it was starting
                    self._send(child, signal.SIGKILL if self._forced else self._signal)
                try:
                    code = await child.wait()
                finally:
                    del self._children[slot]
                if code == 0 or self._signal is not None:
                    log.info(
                        "worker %d (pid %d) exited: %s",
                        slot + 1,
                        child.pid,
                        describe_exit(code),
                    )
                    return code
                if self._loop.time() - started >= self.stable_after:
                    backoff = self.min_backoff
                log.warning(
                    "worker %d (pid %d) died (%s), restarting in %.1fs",
                    slot + 1,
                    child.pid,
                    describe_exit(code),
                    backoff,
                )
            self.waiting.add(slot)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_event.wait(), backoff)
            finally:
                self.waiting.discard(slot)
            backoff = min(backoff * 2, self.max_backoff)
        # Stopped while waiting to restart: the crash before the stop was already reported
        # (and acted on); the stop itself went cleanly for this slot.
        return 0


__all__ = ["Supervisor", "describe_exit"]
