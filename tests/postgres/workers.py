"""Real worker processes on PostgreSQL, and private PostgreSQL clusters to break.

``pg_world`` gives a test a fresh schema, the test-side app and the CONVEYOR_* variables that
point worker processes at it; ``PgWorkers`` starts those processes and always kills them;
``PrivateCluster`` runs a PostgreSQL server of the test's own (initdb + pg_ctl in a temporary
folder, on a free port) that the test may stop and start at will, and always removes it. The
shared server is never stopped.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor import Conveyor, JobState
from tests.postgres.factory import admin_query, new_schema
from tests.postgres.worker_app import EFFECTS_DIR_ENV, Effect, build_app, read_effects
from tests.worker.harness import WorkerProcess, spawn_logged, wait_for

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class PgWorld:
    """One test's schema, effects folder and test-side app."""

    tmp: Path
    effects_dir: Path
    app: Conveyor
    #: CONVEYOR_* (and the effects folder) for worker processes.
    env: dict[str, str]

    def effects(self, kind: str | None = None) -> list[Effect]:
        return read_effects(self.effects_dir, kind)

    def count(self, state: JobState) -> int:
        return sum(per_queue.get(state, 0) for per_queue in self.app.stats().values())

    def counts(self) -> dict[JobState, int]:
        totals: dict[JobState, int] = {}
        for per_queue in self.app.stats().values():
            for state, n in per_queue.items():
                totals[state] = totals.get(state, 0) + n
        return totals


@contextmanager
def pg_world(tmp: Path, url: str, **settings: Any) -> Iterator[PgWorld]:
    """A fresh schema on the server at ``url``; ``settings`` go to the test's app and, as
    CONVEYOR_* variables, to every worker process."""
    schema = new_schema()
    effects_dir = tmp / "effects"
    effects_dir.mkdir()
    app = build_app(url, postgres_schema=schema, **settings)
    env = {
        "CONVEYOR_URL": url,
        "CONVEYOR_POSTGRES_SCHEMA": schema,
        EFFECTS_DIR_ENV: str(effects_dir),
        **{f"CONVEYOR_{name.upper()}": str(value) for name, value in settings.items()},
    }
    try:
        app.backend  # noqa: B018  (migrated before any worker process opens it)
        yield PgWorld(tmp, effects_dir, app, env)
    finally:
        app.close()
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(url, autocommit=True, connect_timeout=5) as admin,
        ):
            admin.execute(admin_query("drop_schema", schema=schema))


@dataclass
class PgWorkers:
    """Worker processes of ``tests.postgres.worker_app``; ``cleanup`` kills whatever is left."""

    world: PgWorld
    procs: list[WorkerProcess] = field(default_factory=list)

    def start(
        self,
        name: str,
        *,
        concurrency: int = 8,
        queues: Iterable[str] = (),
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        prefix: Iterable[str] = (),
        grace: float | None = None,
    ) -> WorkerProcess:
        stderr_path = self.world.tmp / f"worker-{name}.stderr"
        argv = [
            *prefix,  # e.g. ip netns exec NAME: the worker runs on another "host"
            sys.executable,
            "-m",
            "tests.postgres.worker_app",
            "--concurrency",
            str(concurrency),
        ]
        for queue in queues:
            argv += ["--queue", queue]
        if grace is not None:
            argv += ["--grace", str(grace)]
        popen = spawn_logged(argv, {**self.world.env, **(env or {})}, stderr_path)
        proc = WorkerProcess(name, popen, stderr_path, 0.0)
        self.procs.append(proc)
        if wait_ready:
            proc.wait_ready(60)
        return proc

    def logs(self) -> str:
        return "\n".join(
            f"----- worker {p.name} (pid {p.pid}) -----\n{p.log()}" for p in self.procs
        )

    def cleanup(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                proc.kill()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_orphans() -> None:
    """Stop and delete the clusters of test processes that died without cleaning up."""
    for folder in Path(tempfile.gettempdir()).glob("conveyor-pg-*"):
        try:
            owner = int((folder / "owner").read_text())
        except (OSError, ValueError):
            continue  # not one of ours, or still being made
        if _alive(owner):
            continue
        if (folder / "data" / "postmaster.pid").exists():
            command = [str(PG_BIN / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate"]
            if os.geteuid() == 0:
                command = ["runuser", "-u", "postgres", "--", *command]
            subprocess.run([*command, "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


class PrivateCluster:
    """A PostgreSQL 15 server of the test's own: initdb'd in a temporary folder, listening on
    127.0.0.1 on a free port. ``destroy`` stops it (immediately) and deletes everything."""

    def __init__(
        self,
        *,
        listen: str = "127.0.0.1",
        settings: dict[str, str] | None = None,
        hba: Iterable[str] = (),
    ) -> None:
        _sweep_orphans()
        self.folder = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
        # Whose it is: a test run killed outright leaves its cluster to the next one to sweep.
        (self.folder / "owner").write_text(str(os.getpid()))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = free_port()
        self.listen = listen
        self.settings = {
            "max_connections": "60",
            "shared_buffers": "32MB",
            "unix_socket_directories": str(self.folder),
            **(settings or {}),
        }
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:  # initdb refuses to run as root
            shutil.chown(self.folder, "postgres", "postgres")
        atexit.register(self.destroy)
        self._run(
            PG_BIN / "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        extra = "".join(f"{line}\n" for line in hba)
        if extra:  # e.g. "host all all 10.0.0.0/8 trust" for clients in network namespaces
            with (self.data / "pg_hba.conf").open("a") as conf:
                conf.write(extra)

    def url(self, host: str = "127.0.0.1", **params: str) -> str:
        extra = "".join(f"&{k}={v}" for k, v in params.items())
        return f"postgresql://postgres@{host}:{self.port}/postgres?connect_timeout=3{extra}"

    def _run(self, *argv: Any) -> None:
        command = [str(a) for a in argv]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{self.server_log()}"
            )

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses={self.listen} " + " ".join(
            f"-c {k}={v}" for k, v in self.settings.items()
        )
        self._run(
            PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60",
            "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.folder.exists():
            if self.running():
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self.stop("immediate")
            shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def private_cluster(**options: Any) -> Iterator[PrivateCluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL 15 server binaries in {PG_BIN} to run a private cluster")
    cluster = PrivateCluster(**options)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


__all__ = [
    "PgWorkers",
    "PgWorld",
    "PrivateCluster",
    "free_port",
    "pg_world",
    "private_cluster",
    "wait_for",
]
