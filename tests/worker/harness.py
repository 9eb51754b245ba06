"""Helpers for the worker tests: a per-test world (job database + effects database), real
worker subprocesses that are always cleaned up, and polling with a deadline instead of sleeps."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from conveyor import Conveyor, Job, JobState
from conveyor.worker.liveness import ProcessState, proc_state
from tests.support import migrated_sqlite_file
from tests.worker.sample_app import EFFECTS_ENV, build_app, create_effects_db

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Short lease settings so lease expiry and rescue happen within a few seconds.
LEASE = 2.0
HEARTBEAT = 0.5
SWEEP = 0.2
#: Generous: a slow CI machine must not fail a correct worker.
DEADLINE = 30.0
#: Worker environment for the default lease (30 s) and heartbeat (10 s) instead of the above.
DEFAULT_LEASE_ENV = {"CONVEYOR_LEASE": "", "CONVEYOR_HEARTBEAT": ""}

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | Literal[False] | None],
    what: str,
    timeout: float = DEADLINE,
    interval: float = 0.02,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; fail the test after
    ``timeout``. The None or False it gives while it waits is not part of the result's type."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f"\n{on_timeout()}" if on_timeout is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(interval)


@dataclass(frozen=True)
class Effect:
    id: int
    kind: str
    job_id: int
    attempt: int
    worker_pid: int
    at: float
    data: Any


@dataclass
class World:
    """One test's job database, effects database and the test-side Conveyor app."""

    tmp: Path
    db_path: Path
    effects_path: Path
    app: Conveyor
    settings_env: dict[str, str]

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def effects(self, kind: str | None = None, job_id: int | None = None) -> list[Effect]:
        db = sqlite3.connect(self.effects_path, timeout=60)
        try:
            rows = db.execute(
                "SELECT id, kind, job_id, attempt, worker_pid, at, data FROM effects "
                "WHERE (? IS NULL OR kind = ?) AND (? IS NULL OR job_id = ?) ORDER BY id",
                (kind, kind, job_id, job_id),
            ).fetchall()
        finally:
            db.close()
        return [
            Effect(r[0], r[1], r[2], r[3], r[4], r[5], None if r[6] is None else json.loads(r[6]))
            for r in rows
        ]

    def jobs(self, ids: Iterable[int]) -> list[Job]:
        return [self.app.get_job(job_id) for job_id in ids]

    def count(self, state: JobState) -> int:
        return sum(per_queue.get(state, 0) for per_queue in self.app.stats().values())

    def all_in(self, ids: Iterable[int], *states: JobState) -> bool:
        return all(job.state in states for job in self.jobs(ids))

    def describe(self, ids: Iterable[int]) -> str:
        return "\n".join(
            f"job {j.id}: {j.state} attempts={j.attempts} lost_runs={j.lost_runs}"
            for j in self.jobs(ids)
        )


def make_world(tmp: Path) -> World:
    db_path = tmp / "jobs.db"
    effects_path = tmp / "effects.db"
    create_effects_db(effects_path)
    # Migrated before any worker process opens it (a copy of a file migrated once: cheaper).
    migrated_sqlite_file(db_path)
    app = build_app(f"sqlite:///{db_path}", lease=LEASE, heartbeat=HEARTBEAT, sweep_interval=SWEEP)
    env = {
        "CONVEYOR_URL": f"sqlite:///{db_path}",
        "CONVEYOR_LEASE": str(LEASE),
        "CONVEYOR_HEARTBEAT": str(HEARTBEAT),
        "CONVEYOR_SWEEP_INTERVAL": str(SWEEP),
        EFFECTS_ENV: str(effects_path),
    }
    return World(tmp, db_path, effects_path, app, env)


def spawn_logged(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a test process from the repository root, with the repository importable, ``env``
    over this process's environment, and its stdout and stderr in ``log``."""
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        **env,
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, cwd=REPO_ROOT, env=full_env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )


@dataclass
class WorkerProcess:
    name: str
    popen: subprocess.Popen[bytes]
    stderr_path: Path
    started_at: float

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def freeze(self) -> None:
        """SIGSTOP, and wait until every thread has stopped: the signal only marks the process,
        and a thread running on the other core goes on for a moment (long enough to see a file
        the test creates next)."""
        self.send(signal.SIGSTOP)
        threads = Path(f"/proc/{self.pid}/task")

        def frozen() -> bool:
            return all(
                proc_state(int(thread.name)) is not ProcessState.RUNNING
                for thread in threads.iterdir()
            )

        wait_for(frozen, f"every thread of worker {self.name} to stop")

    def wait_log(self, text: str, timeout: float = DEADLINE) -> None:
        def seen() -> bool:
            if text in self.log():
                return True
            if not self.alive():
                raise AssertionError(
                    f"worker {self.name} exited ({self.popen.returncode}) before logging "
                    f"{text!r}:\n{self.log()}"
                )
            return False

        wait_for(seen, f"worker {self.name} to log {text!r}", timeout, 0.02, self.log)

    def wait_ready(self, timeout: float = DEADLINE) -> None:
        self.wait_log(" ready: ", timeout)

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.name} did not exit within {timeout:g}s:\n{self.log()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL and reap; also wakes a stopped process so it can die."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.send_signal(signal.SIGCONT)
        self.popen.wait(10)


@dataclass
class Workers:
    """Starts worker subprocesses of the sample app; ``cleanup`` kills whatever is left."""

    world: World
    procs: list[WorkerProcess] = field(default_factory=list)

    def start(
        self,
        name: str,
        *,
        concurrency: int = 10,
        prefetch: int | None = None,
        grace: float = 30.0,
        burst: bool = False,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
    ) -> WorkerProcess:
        stderr_path = self.world.tmp / f"worker-{name}.stderr"
        argv = [
            sys.executable,
            "-m",
            "tests.worker.runner",
            "--concurrency",
            str(concurrency),
            "--grace",
            str(grace),
        ]
        if burst:
            argv.append("--burst")
        if prefetch is not None:
            argv += ["--prefetch", str(prefetch)]
        popen = spawn_logged(argv, {**self.world.settings_env, **(env or {})}, stderr_path)
        proc = WorkerProcess(name, popen, stderr_path, time.time())
        self.procs.append(proc)
        if wait_ready:
            proc.wait_ready()
        return proc

    def logs(self) -> str:
        return "\n".join(
            f"----- worker {p.name} (pid {p.pid}) -----\n{p.log()}" for p in self.procs
        )

    def cleanup(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                proc.kill()
