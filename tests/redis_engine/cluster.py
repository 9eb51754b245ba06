"""A private 3-master Redis Cluster for this test session: three ``redis-server
--cluster-enabled yes`` on free ports, joined by ``redis-cli --cluster create``, started on
first use and killed when the process exits."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import redis

_lock = threading.Lock()
_url: str | None = None


def session_cluster() -> str:
    """The URL of one node of this process's cluster (a cluster client finds the others)."""
    global _url
    with _lock:
        if _url is None:
            _url = _start()
        return _url


def _start() -> str:
    for binary in ("redis-server", "redis-cli"):
        if shutil.which(binary) is None:
            raise RuntimeError(f"{binary} is not installed: the Redis Cluster tests need it")
    folder = Path(tempfile.mkdtemp(prefix="conveyor-cluster-"))
    ports: list[int] = []
    while len(ports) < 3:
        port = _cluster_port()
        if port not in ports:
            ports.append(port)
    procs: list[subprocess.Popen[bytes]] = []
    creator = os.getpid()

    def stop() -> None:
        if os.getpid() != creator:  # a forked child inherited the hook
            return
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.kill()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(stop)
    for port in ports:
        node = folder / str(port)
        node.mkdir()
        procs.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(node),
                ],
                stdout=(node / "log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
    for port in ports:
        _wait(functools.partial(_ping, port), folder)
    subprocess.run(
        [
            "redis-cli",
            "--cluster",
            "create",
            *(f"127.0.0.1:{p}" for p in ports),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )
    for port in ports:
        _wait(functools.partial(_state_ok, port), folder)
    return f"redis://127.0.0.1:{ports[0]}/0"


def _cluster_port() -> int:
    """A free port at most 55535 whose cluster bus port (10,000 above) is free too."""
    while True:
        port = random.randint(20000, 55535)
        if _bindable(port) and _bindable(port + 10000):
            return port


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ping(port: int) -> bool:
    return bool(redis.Redis(host="127.0.0.1", port=port).ping())


def _state_ok(port: int) -> bool:
    info = cast("dict[str, str]", redis.Redis(host="127.0.0.1", port=port).cluster("info"))
    return info["cluster_state"] == "ok"


def _wait(ready: Callable[[], bool], folder: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if ready():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            logs = "".join(log.read_text()[-300:] for log in folder.glob("*/log"))
            raise RuntimeError(f"the test Redis Cluster did not come up: {logs}")
        time.sleep(0.05)
