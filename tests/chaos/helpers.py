"""Helpers for the SQLite fault tests: helper processes that are always cleaned up, a process
that holds the database's write lock, a small filesystem to fill, and raw integrity checks.

Everything here works on real files and real processes; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor import JobState
from tests.support import migrated_sqlite_file
from tests.worker.harness import (
    DEADLINE,
    HEARTBEAT,
    LEASE,
    REPO_ROOT,
    SWEEP,
    World,
    wait_for,
)
from tests.worker.sample_app import EFFECTS_ENV, build_app, create_effects_db

#: Logged (and asserted absent) when lock contention leaks out of the SQLite engine.
LOCK_LEAKS = ("database is locked", "DatabaseBusy", "Traceback")


def make_world_at(tmp: Path, db_path: Path, **settings: Any) -> World:
    """Like ``tests.worker.harness.make_world``, but the job database may live elsewhere (on a
    small filesystem) while the effects database and the worker logs stay in ``tmp``.

    ``settings`` override the harness's short lease/heartbeat/sweep, for the test's app and
    for every worker it starts (through CONVEYOR_* variables).
    """
    effects_path = tmp / "effects.db"
    create_effects_db(effects_path)
    values: dict[str, Any] = {
        "lease": LEASE,
        "heartbeat": HEARTBEAT,
        "sweep_interval": SWEEP,
        **settings,
    }
    url = f"sqlite:///{db_path}"
    # Migrated before any other process opens it (a copy of a file migrated once: cheaper).
    migrated_sqlite_file(db_path)
    app = build_app(url, **values)
    env = {"CONVEYOR_URL": url, EFFECTS_ENV: str(effects_path)}
    env.update({f"CONVEYOR_{name.upper()}": str(value) for name, value in values.items()})
    return World(tmp, db_path, effects_path, app, env)


def integrity_check(db_path: Path) -> list[str]:
    """``PRAGMA integrity_check`` on a fresh raw connection (the full check, not quick_check)."""
    db = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    try:
        return [row[0] for row in db.execute("PRAGMA integrity_check")]
    finally:
        db.close()


def job_ids(db_path: Path) -> set[int]:
    """Every job id in the database, read on a fresh raw connection."""
    db = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    try:
        return {row[0] for row in db.execute("SELECT id FROM conveyor_jobs")}
    finally:
        db.close()


def states(world: World) -> dict[JobState, int]:
    """Job counts by state, over every queue."""
    counts: dict[JobState, int] = {}
    for per_queue in world.app.stats().values():
        for state, count in per_queue.items():
            counts[state] = counts.get(state, 0) + count
    return counts


# --- helper processes ------------------------------------------------------------------------


@dataclass
class HelperProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {timeout:g}s:\n{self.log()}"
            ) from None


@dataclass
class Helpers:
    """Starts helper subprocesses (lock holders, enqueuers); ``cleanup`` kills what is left."""

    tmp: Path
    procs: list[HelperProcess] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> HelperProcess:
        log_path = self.tmp / f"helper-{name}.stderr"
        full_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
            **(env or {}),
        }
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [sys.executable, *argv],
                cwd=REPO_ROOT,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        proc = HelperProcess(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                proc.kill()


# --- a process that holds the write lock -----------------------------------------------------

#: Run by the lock holder: take the write lock with raw sqlite3, say so with a file, hold it for
#: at least ``min_hold`` seconds and until the ``let_go`` file exists (at most 60 s), then say
#: "releasing" with another file just before COMMIT. Sleeping here is the point of the process.
HOLDER_SCRIPT = """
import os, sqlite3, sys, time
path, held, let_go, releasing, min_hold = sys.argv[1:6]
db = sqlite3.connect(path, timeout=60, isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
open(held, "w").close()
until = time.monotonic() + float(min_hold)
give_up = time.monotonic() + 60
while time.monotonic() < give_up and (
    time.monotonic() < until or (let_go != "-" and not os.path.exists(let_go))
):
    time.sleep(0.01)
open(releasing, "w").close()
db.execute("COMMIT")
db.close()
"""


@dataclass
class LockHolder:
    proc: HelperProcess
    held: Path
    let_go: Path
    releasing: Path

    def release(self) -> None:
        """Let a holder started with ``until_let_go=True`` commit (after its minimum hold)."""
        self.let_go.touch()

    @property
    def released(self) -> bool:
        """True once the holder has started to commit: the lock is (about to be) free."""
        return self.releasing.exists()


@contextlib.contextmanager
def hold_write_lock(
    helpers: Helpers,
    db_path: Path,
    seconds: float,
    *,
    name: str = "lock",
    until_let_go: bool = False,
) -> Iterator[LockHolder]:
    """Another process holds ``BEGIN EXCLUSIVE`` on ``db_path`` for ``seconds`` (and, with
    ``until_let_go``, until ``release()``). Entered once the lock is held; on exit waits for
    the holder to commit and checks that it exited cleanly."""
    tmp = helpers.tmp
    held, let_go, releasing = (tmp / f"{name}.{what}" for what in ("held", "let-go", "releasing"))
    proc = helpers.start(
        name,
        [
            "-c",
            HOLDER_SCRIPT,
            str(db_path),
            str(held),
            str(let_go) if until_let_go else "-",
            str(releasing),
            str(seconds),
        ],
    )

    def holding() -> bool:
        if held.exists():
            return True
        if not proc.alive():
            raise AssertionError(f"lock holder exited early:\n{proc.log()}")
        return False

    wait_for(holding, "the other process to hold the write lock", interval=0.005)
    holder = LockHolder(proc, held, let_go, releasing)
    try:
        yield holder
    finally:
        holder.release()
    assert proc.wait_exit(seconds + DEADLINE) == 0, proc.log()


# --- a small filesystem ----------------------------------------------------------------------


def fill_filesystem(path: Path) -> int:
    """Write ``path`` until the filesystem it is on has no space left; return its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    written = 0
    try:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            data = b"\0" * chunk
            while True:
                try:
                    written += os.write(fd, data)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written


def mount_tmpfs(where: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` at ``where``; the reason it could not, or None."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (os.geteuid() != 0)"
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except FileNotFoundError:
        return "no mount command on this machine"
    if result.returncode != 0:
        return f"mount -t tmpfs is not permitted here: {result.stderr.strip()}"
    return None


def unmount(where: Path) -> None:
    """Unmount, retrying while a just-killed process still holds files open; lazily at last."""
    deadline = time.monotonic() + 10
    while True:
        result = subprocess.run(["umount", str(where)], capture_output=True, text=True)
        if result.returncode == 0 or not os.path.ismount(where):
            return
        if time.monotonic() >= deadline:
            subprocess.run(["umount", "-l", str(where)], check=True)
            return
        time.sleep(0.1)  # teardown only: give the kernel time to close a dead process's files
