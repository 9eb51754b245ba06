"""A private redis-server that a test can SIGKILL and start again on the same port with the same
data folder (so it reloads its append-only file), and the worker-test world on top of it.

The shared server at 127.0.0.1:6379 is never touched: each test gets its own port and folder.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.redis_engine.server import free_port
from tests.worker.harness import HEARTBEAT, LEASE, SWEEP, World
from tests.worker.sample_app import EFFECTS_ENV, build_app, create_effects_db

#: Durable as Redis gets: every write is fsynced to the append-only file before its reply.
ALWAYS = ("--appendonly", "yes", "--appendfsync", "always")


class RestartableServer:
    def __init__(self, folder: Path, *options: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: the Redis engine's tests need it")
        self.binary = binary
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.options = options
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = folder / "redis-server.log"

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and return once it answers PING with its data loaded."""
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--logfile",
                str(self.log_path),
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    # PING answers LOADING while the AOF is replayed: ask for data instead.
                    client.dbsize()
                    return
                except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                    if self.proc.poll() is not None:
                        raise AssertionError(
                            f"redis-server exited ({self.proc.returncode}):\n"
                            + self.log_path.read_text(errors="replace")
                        ) from None
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def sigkill(self) -> None:
        """Kill the server as a crash would: no shutdown, no final save."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@contextlib.contextmanager
def restartable_server(folder: Path, *options: str) -> Iterator[RestartableServer]:
    server = RestartableServer(folder, *options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_redis_world(tmp: Path, url: str, prefix: str = "chaos", **settings: Any) -> World:
    """``tests.worker.harness.make_world`` on a Redis database: the test's app and every worker
    it starts (through CONVEYOR_* variables) use ``url`` with key prefix ``prefix`` and the
    harness's short lease, heartbeat and sweep unless ``settings`` say otherwise. World.db_path
    names no database here (the effects database stays a SQLite file in ``tmp``)."""
    effects_path = tmp / "effects.db"
    create_effects_db(effects_path)
    values: dict[str, Any] = {
        "lease": LEASE,
        "heartbeat": HEARTBEAT,
        "sweep_interval": SWEEP,
        **settings,
    }
    app = build_app(url, redis_prefix=prefix, **values)
    app.backend  # lay out the keys before any worker connects  # noqa: B018
    env = {"CONVEYOR_URL": url, "CONVEYOR_REDIS_PREFIX": prefix, EFFECTS_ENV: str(effects_path)}
    env.update({f"CONVEYOR_{name.upper()}": str(value) for name, value in values.items()})
    return World(tmp, tmp / "no-sqlite-database", effects_path, app, env)
