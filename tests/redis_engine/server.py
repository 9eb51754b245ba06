"""A private redis-server on a free port, for the tests that change a server's configuration or
break its connections: the shared server at 127.0.0.1:6379 is never touched by them."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def private_server(folder: Path, *options: str) -> Iterator[str]:
    """Start ``redis-server`` (no persistence unless ``options`` say so) and yield its URL;
    killed afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: the Redis engine's tests need it")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--save",
            "",
            "--appendonly",
            "no",
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.02)
        client.close()
        yield url
    finally:
        proc.kill()
        proc.wait(10)


def kill_when_paused(admin: redis.Redis, timeout: float = 10.0) -> None:
    """Once a client is held by CLIENT PAUSE with its script in (``flags=b``, ``cmd=evalsha``),
    close its connection, server-side: the script was sent whole, and never ran."""
    deadline = time.monotonic() + timeout
    while True:
        held = [
            client["id"]
            for client in cast("list[dict[str, str]]", admin.client_list())
            if "b" in client["flags"] and client["cmd"] == "evalsha"
        ]
        if held:
            for client_id in held:
                admin.client_kill_filter(_id=client_id)
            return
        assert time.monotonic() < deadline, "no client was held by the pause"
        time.sleep(0.01)
