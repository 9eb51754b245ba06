"""The heartbeater keeps this worker alive in the database -- its row in the registry and the
leases of its runs -- through a heartbeat process of its own.

The beats come from another process (pulse.py), so that nothing a job does inside the worker --
holding the GIL in a C call, blocking the event loop -- can starve them, while a worker that is
stopped or gone still loses its runs. The worker names each run it holds (``hold``) and each
one whose lease it no longer needs (``release``), and says when it begins to stop
(``stopping``). The heartbeat process reports runs lost to another worker and cancel requests,
which reach ``on_report``, and a stop asked through the database, which calls
``on_stop_requested``, both on this side's reader thread.

Should the heartbeat process die, the reader thread starts another at once (then with a
backoff, if they keep dying) and hands it every run held; its first beat follows immediately.

The first heartbeat process is best started before the worker opens its store (``launch``):
told only its engine, it imports that engine's modules -- most of its start-up -- while the
worker imports and connects on another core, instead of beside the worker's first claims.

The heartbeat process opens the store from the backend's settings and uses the database's
clock: a clock injected into the application (``Conveyor(clock=...)``) does not reach it. A
store no other process can open gets a heartbeat thread instead, running the same loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from conveyor.backends import engine_of
from conveyor.backends.base import Backend, LeaseReport
from conveyor.worker import pulse_wire
from conveyor.worker.pulse import serve
from conveyor.worker.pulse_wire import LogLine, PulseConfig, StopRequested
from conveyor.worker_info import WorkerRegistration

log = logging.getLogger("conveyor.worker")

#: Seconds between looks for cancel requests while the worker holds runs. A cancel is heard
#: within this (0.125 s on average), which leaves a process-isolated job its 0.5 s to stop by
#: itself and still ends it within a second. Each look reads an index of cancel-requested
#: running jobs only: almost always empty.
CANCEL_CHECK = 0.25
#: Seconds between looks for a stop asked through the database (``conveyor workers stop``),
#: held runs or not, so that a stop begins within about a second rather than at the next beat.
#: Each look reads the worker's own row by its primary key.
STOP_CHECK = 1.0
#: A heartbeat process that lived this long did not die of being started.
_HEALTHY = 10.0
_MAX_DELAY = 5.0


@dataclass
class Launched:
    """A heartbeat process started, not yet told what to beat for, and this side's ends of
    its two pipes."""

    process: subprocess.Popen[bytes]
    to_pulse: int
    from_pulse: int

    def discard(self) -> None:
        """End it unused (it would exit by itself at the end of its pipe, after its imports)."""
        for fd in (self.to_pulse, self.from_pulse):
            os.close(fd)
        self.process.kill()
        self.process.wait()


def launch(url: str) -> Launched:
    """Start a heartbeat process for a store of ``url``'s engine; it imports that engine's
    modules, then waits for its configuration (``Heartbeater`` sends it)."""
    to_read, to_write = os.pipe()
    from_read, from_write = os.pipe()
    try:
        # -P: modules in the working directory must not shadow the ones it imports.
        command = [sys.executable, "-P", "-m", "conveyor.worker.pulse_main"]
        process = subprocess.Popen(
            [*command, str(to_read), str(from_write), engine_of(url)],
            pass_fds=(to_read, from_write),
            stdin=subprocess.DEVNULL,
            env=_child_env(),
        )
    except BaseException:
        for fd in (to_write, from_read):
            os.close(fd)
        raise
    finally:
        for fd in (to_read, from_write):
            os.close(fd)
    return Launched(process, to_write, from_read)


class Heartbeater:
    def __init__(
        self,
        backend: Backend,
        registration: WorkerRegistration,
        on_report: Callable[[LeaseReport], None],
        on_stop_requested: Callable[[], None],
        *,
        lease: float,
        launched: Launched | None = None,
    ) -> None:
        """Beats every ``registration.beat_interval`` seconds for the worker of
        ``registration``, which is this process, on the store of ``backend``; ``launched``:
        a heartbeat process started for it already (``launch``), which becomes its first."""
        self._backend = backend
        self._launched = launched
        self._config = PulseConfig(
            # One call at a time: one connection is all it needs, whatever the worker's pool.
            settings=backend.settings.replace(postgres_pool_min_size=1, postgres_pool_max_size=1),
            registration=registration,
            lease=lease,
            cancel_check=CANCEL_CHECK,
            stop_check=STOP_CHECK,
        )
        self._on_report = on_report
        self._on_stop_requested = on_stop_requested
        self._worker = registration.id
        self._held: set[str] = set()
        self._worker_stopping = False
        #: Guards the held runs and the pipe to the heartbeat process, so that a process
        #: started again gets every run held, followed by every change after that.
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        #: Instead of a process, for a store only this process can open.
        self._beating: threading.Thread | None = None
        self._to_pulse = -1
        self._from_pulse = -1
        #: What the heartbeat process has not been sent yet: the writer thread sends it, so
        #: that the worker never waits on a full pipe (a heartbeat process still importing, or
        #: busy, reads nothing for a while, and a few batches of tokens fill a pipe).
        self._outbox = bytearray()
        self._outbox_filled = threading.Condition(self._lock)
        #: The pipe the writer is writing to outside the lock (-1: none); closed by the writer
        #: once done if it was retired meanwhile, so that its number cannot be reused under it.
        self._writing_to = -1
        self._retired = -1
        self._thread = threading.Thread(target=self._serve, name="conveyor-heartbeat", daemon=True)
        self._writer = threading.Thread(
            target=self._write, name="conveyor-heartbeat-writer", daemon=True
        )

    @property
    def pid(self) -> int | None:
        """The heartbeat process's pid (while one runs)."""
        process = self._process
        return None if process is None else process.pid

    def start(self) -> None:
        """Start the heartbeat process from the reader thread, without waiting for it: the
        worker claims meanwhile (its row in the registry is written already). Runs held before
        the process is up are handed to it with the others when it starts, well within their
        lease."""
        self._writer.start()
        self._thread.start()

    def hold(self, tokens: Iterable[str]) -> None:
        """Keep the leases of these runs alive (from their claim on)."""
        with self._lock:
            new = [token for token in tokens if token not in self._held]
            self._held.update(new)
            self._send(pulse_wire.changes(pulse_wire.HOLD, new))

    def release(self, tokens: Iterable[str]) -> None:
        """Stop extending the leases of these runs (their outcomes are written, or they were
        lost)."""
        with self._lock:
            gone = [token for token in tokens if token in self._held]
            self._held.difference_update(gone)
            self._send(pulse_wire.changes(pulse_wire.RELEASE, gone))

    def stopping(self) -> None:
        """The worker began to stop: its row in the registry says so from the next beat on."""
        with self._lock:
            self._worker_stopping = True
            self._send(pulse_wire.STOPPING + b"\n")

    def stop(self) -> None:
        """End the heartbeat process (leases and the registry row stay as they are)."""
        self._closing.set()
        with self._lock:
            self._outbox_filled.notify()
            self._close_pipe_to_pulse()
            process = self._process
            launched, self._launched = self._launched, None
        if launched is not None:
            launched.discard()
        if process is not None:
            # Killed rather than waited for: all it knows is in the database already, and one
            # still starting up would keep a short-lived worker waiting for its imports.
            process.kill()
            process.wait()
        # A heartbeat thread ends on the end of its pipe, and so does the reader thread then.
        if self._thread.is_alive():
            self._thread.join(5)

    # --- the heartbeat process ------------------------------------------------------------

    def _spawn(self) -> None:
        """Start a heartbeat process and tell it every run held (with the lock held)."""
        launched, self._launched = self._launched, None
        if self._backend.shared:
            if launched is None:
                launched = launch(self._backend.settings.url)
            self._process = launched.process
            to_write, from_read = launched.to_pulse, launched.from_pulse
            log.info("heartbeat process started (pid %d)", self._process.pid)
        else:
            if launched is not None:
                launched.discard()
            to_read, to_write = os.pipe()
            from_read, from_write = os.pipe()
            # No other process can open the store (an in-memory SQLite database): beat from a
            # thread of this process instead, which a job holding the GIL can starve.
            self._beating = threading.Thread(
                target=self._beat_here,
                args=(to_read, from_write),
                name="conveyor-pulse",
                daemon=True,
            )
            self._beating.start()
        self._to_pulse, self._from_pulse = to_write, from_read
        # Changes not sent to the last process are in what follows: every run held now.
        self._outbox.clear()
        stopping = pulse_wire.STOPPING + b"\n" if self._worker_stopping else b""
        self._send(
            self._config.encode() + pulse_wire.changes(pulse_wire.HOLD, self._held) + stopping
        )

    def _beat_here(self, to_read: int, from_write: int) -> None:
        try:
            serve(to_read, from_write, self._backend)
        finally:
            os.close(to_read)
            os.close(from_write)

    def _send(self, data: bytes) -> None:
        """Queue ``data`` for the heartbeat process (with the lock held)."""
        if data:
            self._outbox += data
            self._outbox_filled.notify()

    def _write(self) -> None:
        """The writer thread: blocking writes, so that no change can be lost; the heartbeat
        process drains the pipe on a thread of its own. A dead one is replaced by the reader
        thread, and the new one is told every run held."""
        while True:
            with self._lock:
                while not self._outbox and not self._closing.is_set():
                    self._outbox_filled.wait()
                if self._closing.is_set():
                    return
                data, fd = bytes(self._outbox), self._to_pulse
                self._outbox.clear()
                self._writing_to = fd
            with contextlib.suppress(OSError):
                while data:
                    data = data[os.write(fd, data) :]
            with self._lock:
                self._writing_to = -1
                if self._retired == fd:
                    os.close(fd)
                    self._retired = -1

    def _close_pipe_to_pulse(self) -> None:
        """(With the lock held.)"""
        if self._to_pulse >= 0:
            if self._to_pulse == self._writing_to:
                self._retired = self._to_pulse
            else:
                os.close(self._to_pulse)
            self._to_pulse = -1

    def _serve(self) -> None:
        """Start the heartbeat process, hand reports on until it ends; start another if it
        died."""
        with self._lock:
            if self._closing.is_set():
                return
            try:
                self._spawn()
                spawned = True
            except OSError as exc:
                log.error(
                    "cannot start the heartbeat process (%s -m conveyor.worker.pulse_main): %s",
                    sys.executable or "no interpreter",
                    exc,
                )
                spawned = False
        if not spawned and not self._respawn(0.1):
            return
        failures = 0
        while True:
            started = time.monotonic()
            for lines in pulse_wire.batches(self._from_pulse):
                for line in lines:
                    self._handle(pulse_wire.decode(line))
            os.close(self._from_pulse)
            if self._beating is not None:
                self._beating.join()
                ended = "the heartbeat thread ended"
            else:
                assert self._process is not None
                code = self._process.wait()
                ended = f"the heartbeat process {self._process.pid} exited (status {code})"
            if self._closing.is_set():
                return
            # Start the next one at once, unless they keep dying young.
            failures = 0 if time.monotonic() - started > _HEALTHY else failures
            delay = 0.0 if failures == 0 else min(_MAX_DELAY, 0.1 * 2**failures)
            failures += 1
            log.error("%s; starting another%s", ended, f" in {delay:.1f}s" if delay else "")
            if not self._respawn(delay):
                return

    def _respawn(self, delay: float) -> bool:
        """Start a heartbeat process after ``delay``, retrying until one starts; False once
        the worker stops."""
        while not self._closing.wait(delay):
            with self._lock:
                if self._closing.is_set():
                    return False
                self._close_pipe_to_pulse()
                try:
                    self._spawn()
                    return True
                except OSError as exc:
                    log.error("could not start a heartbeat process: %s", exc)
            delay = min(_MAX_DELAY, max(2 * delay, 0.1))
        return False

    def _handle(self, message: LeaseReport | StopRequested | LogLine) -> None:
        if isinstance(message, LogLine):
            logging.getLogger(message.name).log(message.level, "%s", message.message)
            return
        try:
            if isinstance(message, StopRequested):
                log.info("worker %s: a stop was requested through the database", self._worker)
                self._on_stop_requested()
            else:
                self._on_report(message)
        except Exception:
            log.exception("handling a heartbeat report failed")


def _child_env() -> dict[str, str]:
    """This environment, with this process's conveyor first on the import path."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, path] if path else [root])}
