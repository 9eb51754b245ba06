"""The heartbeater extends every lease this worker holds, in one statement per beat.

It runs on its own thread with its own schedule, so a task that blocks the event loop cannot
starve it: the worker keeps its leases as long as the process is alive and the database answers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from conveyor.backends.base import Backend, LeaseReport
from conveyor.errors import ConveyorError

log = logging.getLogger("conveyor.worker")


class Heartbeater:
    def __init__(
        self,
        backend: Backend,
        held_tokens: Callable[[], list[str]],
        on_report: Callable[[LeaseReport], None],
        *,
        interval: float,
        lease: float,
    ) -> None:
        self._backend = backend
        self._held_tokens = held_tokens
        self._on_report = on_report
        self._interval = interval
        self._lease = lease
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread = threading.Thread(target=self._run, name="conveyor-heartbeat", daemon=True)
        self.beats = 0

    def start(self) -> None:
        self._thread.start()

    def beat_now(self) -> None:
        """Beat at once (e.g. to learn of a cancel request without waiting a full interval)."""
        self._kick.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(self._interval)
            self._kick.clear()
            if self._stop.is_set():
                return
            tokens = self._held_tokens()
            if not tokens:
                continue
            try:
                report = self._backend.extend_leases(tokens, self._lease)
            except ConveyorError as exc:
                log.warning("heartbeat failed, will retry: %s", exc)
                continue
            except Exception:
                # Never let the thread die: without beats every lease would lapse under
                # jobs that are still running.
                log.exception("heartbeat failed unexpectedly, will retry")
                continue
            self.beats += 1
            if report.lost or report.cancel_requested:
                self._on_report(report)

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        self._thread.join(timeout=5)
