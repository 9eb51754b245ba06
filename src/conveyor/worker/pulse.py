"""The heartbeat process: beats for one worker from outside that worker.

A heartbeat thread inside the worker stops when anything holds the worker's GIL -- a C call that
does not release it, a catastrophic regular expression -- and a job that merely ran long in
that way would be taken from a live worker. This process has an interpreter of its own: every
heartbeat interval it beats the worker's row in the registry (and registers it again if it had
been declared dead) and extends every lease the worker holds in one statement, as long as the
worker exists and is not stopped, whatever the worker's threads are doing.

Between beats it looks for cancel requests every ``cancel_check`` seconds while the worker holds
runs (one read of an index that holds only cancel-requested running jobs), so that a cancel
reaches a running job in a fraction of a second rather than at the next heartbeat; and for a
stop asked through the database (``conveyor workers stop``) every ``stop_check`` seconds, held
runs or not (one read of the worker's row by its primary key; each beat answers it too), so
that a stop begins within about a second. Either is passed on to the worker.

What it must not do is keep a worker's jobs when the worker cannot run them:

- it stops beating for a *stopped* worker (SIGSTOP, Ctrl-Z, a debugger), so that the worker is
  declared dead and its runs go elsewhere as a dead worker's would (see liveness.py: /proc on
  Linux, ``ps`` elsewhere);
- it exits when the worker is gone: the worker's end of its pipe closes (end of file), or it is
  no longer this process's parent (a process the worker forked may hold the pipe open);
- it extends only the runs the worker holds: the worker names each run when it claims it and
  again when it no longer needs its lease (see pulse_wire.py).

It ignores SIGINT and SIGTERM: Ctrl-C or a service manager signals the whole process group, and
the worker, which shuts down gracefully, still needs its leases until its last job is written.

``python -m conveyor.worker.pulse_main IN OUT ENGINE``: IN and OUT are the numbers of the pipe
ends it reads from and writes to (the Heartbeater passes them); ENGINE names the engine of the
store, whose modules it imports while it waits for the configuration. It opens the worker's
store with the worker's settings, on the database's own clock. For a store no other process can
open (an in-memory SQLite database), the same loop runs on a thread of the worker instead.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from conveyor.backends import import_engine, open_backend
from conveyor.backends.base import Backend
from conveyor.errors import ConveyorError
from conveyor.worker import pulse_wire
from conveyor.worker.liveness import ProcessState, process_state
from conveyor.worker.pulse_wire import PulseConfig
from conveyor.worker_info import WorkerState

log = logging.getLogger("conveyor.worker")

T = TypeVar("T")


class Pulse:
    def __init__(
        self,
        config: PulseConfig,
        backend: Backend,
        inbox: Iterator[list[bytes]],
        out: int,
        *,
        watch_worker: bool,
    ) -> None:
        """``watch_worker``: whether the worker is another process, whose state to watch."""
        self._config = config
        self._watch_worker = watch_worker
        self._registration = config.registration
        self._backend = backend
        self._inbox = inbox
        self._out = out
        self._out_lock = threading.Lock()
        self._lock = threading.Lock()
        self._held: set[str] = set()
        #: Cancel requests already reported: each is reported once per run.
        self._told: set[str] = set()
        self._gone = threading.Event()
        # The first tick beats: a heartbeat process started after its predecessor died must
        # not leave the leases and the registry row it inherits to age another interval.
        self._next_beat = 0.0
        self._next_stop_check = 0.0
        #: What the looks between beats look for, while they fail: each failure is said once.
        self._failing: set[str] = set()
        #: The worker began to stop: its row says so from the next beat on.
        self._stopping = False
        self._stop_told = False

    def run(self) -> None:
        """Beat and look for cancel and stop requests until the worker is gone."""
        threading.Thread(target=self._read, name="conveyor-pulse-inbox", daemon=True).start()
        config = self._config
        tick = min(self._registration.beat_interval, config.cancel_check, config.stop_check)
        while self._tick():
            if self._gone.wait(tick):
                return

    def _tick(self) -> bool:
        """Beat if a beat is due, else look for cancel and stop requests as they are due;
        False once the worker is gone."""
        worker = self._registration
        if self._watch_worker and os.getppid() != worker.pid:
            return False
        with self._lock:
            tokens = list(self._held)
        now = time.monotonic()
        if now < self._next_beat:
            if tokens:
                self._check_cancels()
            if now >= self._next_stop_check:
                self._check_stop(now)
            return True
        state = process_state(worker.pid) if self._watch_worker else ProcessState.RUNNING
        if state is ProcessState.RUNNING:
            self._next_beat = time.monotonic() + worker.beat_interval
            # The beat answers whether a stop was requested.
            self._next_stop_check = time.monotonic() + self._config.stop_check
            self._beat_registry()
            if tokens:
                self._beat_leases(tokens)
        # Stopped: look again next tick, and beat as soon as it runs again.
        return state is not ProcessState.GONE

    def _beat_registry(self) -> None:
        worker = self._registration
        state = WorkerState.STOPPING if self._stopping else WorkerState.RUNNING
        try:
            stop = self._backend.beat_worker(worker.id, state)
            if stop is None:
                log.warning(
                    "worker %s was not registered (declared dead after %gs without a beat, its "
                    "running jobs handed to others, or never registered): registering again",
                    worker.id,
                    worker.dead_after,
                )
                self._backend.register_worker(worker)
                stop = self._backend.beat_worker(worker.id, state)
        except Exception as exc:
            # Never give up: a worker that stops beating is declared dead and loses its jobs.
            log.warning("worker beat failed, will retry: %s", exc, exc_info=_unexpected(exc))
            return
        if stop:
            self._tell_stop()

    def _beat_leases(self, tokens: list[str]) -> None:
        try:
            report = self._backend.extend_leases(tokens, self._config.lease)
        except Exception as exc:
            # Never give up: without beats every lease would lapse under running jobs.
            log.warning("heartbeat failed, will retry: %s", exc, exc_info=_unexpected(exc))
            return
        self._tell(set(report.lost), set(report.cancel_requested))

    def _check_cancels(self) -> None:
        worker_id = self._registration.id
        asked = self._look("cancel requests", lambda: self._backend.cancel_requests(worker_id))
        if asked:
            self._tell(set(), set(asked))

    def _check_stop(self, now: float) -> None:
        self._next_stop_check = now + self._config.stop_check
        # Nothing left to learn once the worker stops, whoever asked it to.
        if self._stopping or self._stop_told:
            return
        worker_id = self._registration.id
        if self._look("a stop request", lambda: self._backend.worker_stop_requested(worker_id)):
            self._tell_stop()

    def _look(self, what: str, read: Callable[[], T]) -> T | None:
        """``read()``, or None when it fails. Looks come several times a second: a failure is
        said once, not at every look (heartbeats say more)."""
        try:
            found = read()
        except Exception as exc:
            if what not in self._failing:
                log.warning(
                    "looking for %s failed, will retry: %s", what, exc, exc_info=_unexpected(exc)
                )
            self._failing.add(what)
            return None
        self._failing.discard(what)
        return found

    def _tell_stop(self) -> None:
        if not self._stop_told:
            self._stop_told = True
            self.send(pulse_wire.STOP_REQUESTED)

    def _tell(self, lost: set[str], cancel: set[str]) -> None:
        with self._lock:
            lost &= self._held
            self._held -= lost
            cancel = (cancel & self._held) - self._told
            self._told |= cancel
        if lost or cancel:
            self.send(pulse_wire.report(lost, cancel))

    def _read(self) -> None:
        """Follow the worker's changes until its end of the pipe closes."""
        for lines in self._inbox:
            with self._lock:
                for line in lines:
                    sign, token = line[:1], line[1:].decode()
                    if sign == pulse_wire.HOLD:
                        self._held.add(token)
                    elif sign == pulse_wire.RELEASE:
                        self._held.discard(token)
                        self._told.discard(token)
                    elif line == pulse_wire.STOPPING:
                        self._stopping = True
        self._gone.set()

    def send(self, data: bytes) -> None:
        with self._out_lock:
            try:
                while data:
                    data = data[os.write(self._out, data) :]
            except OSError:  # the worker is gone
                self._gone.set()


def _unexpected(exc: Exception) -> bool:
    """Whether a failure deserves its traceback (ConveyorErrors say all in their message)."""
    return not isinstance(exc, ConveyorError)


class _ToWorker(logging.Handler):
    """Hands log records to the worker, which logs them as its own."""

    def __init__(self, pulse: Pulse) -> None:
        super().__init__(logging.WARNING)
        self._pulse = pulse

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        self._pulse.send(pulse_wire.log_record(record.levelno, record.name, message))


def serve(in_fd: int, out_fd: int, backend: Backend | None = None) -> None:
    """Read the configuration from ``in_fd``, then beat until the worker is gone.

    Without ``backend`` this is the heartbeat process: it opens the store the configuration
    names and hands its log records to the worker. With one -- a store no other process can
    open -- it runs on a thread of the worker's own process and uses the worker's backend.
    """
    inbox = pulse_wire.batches(in_fd)
    first = next(inbox, None)
    if first is None:
        return  # the worker died before it said anything
    config = PulseConfig.decode(first[0])
    # The runs held from the start may have come in the same read as the configuration.
    changes = itertools.chain([first[1:]], inbox)
    if backend is not None:
        Pulse(config, backend, changes, out_fd, watch_worker=False).run()
        return
    own = open_backend(config.settings, check_schema=False)
    try:
        pulse = Pulse(config, own, changes, out_fd, watch_worker=True)
        logging.getLogger().addHandler(_ToWorker(pulse))
        logging.getLogger().setLevel(logging.WARNING)
        pulse.run()
    finally:
        own.close()


def main(argv: list[str]) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    in_fd, out_fd, engine = argv
    # Most of this process's start-up, done while the worker still imports and connects.
    import_engine(engine)
    serve(int(in_fd), int(out_fd))
