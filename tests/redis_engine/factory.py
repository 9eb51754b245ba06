"""The Redis backend factory of the test suite: every backend gets a fresh key prefix on the
server named by CONVEYOR_TEST_REDIS_URL (default redis://127.0.0.1:6379/0), whose keys are
deleted afterwards. An unreachable server fails the tests loudly."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis.connection import connect, key_prefix
from conveyor.settings import Settings

DEFAULT_SERVER = "redis://127.0.0.1:6379/0"


def server_url() -> str:
    return os.environ.get("CONVEYOR_TEST_REDIS_URL", DEFAULT_SERVER)


def new_prefix() -> str:
    return f"test_{os.getpid()}_{secrets.token_hex(4)}"


def drop_prefix(url: str, prefix: str) -> None:
    """Delete every key of ``prefix`` (on a cluster, from the node holding its slot)."""
    settings = Settings(url=url, redis_prefix=prefix)
    pattern = key_prefix(settings).replace("{", "\\{").replace("}", "\\}") + ":*"
    client = connect(settings, retries=0)
    try:
        if isinstance(client, redis.RedisCluster):
            node = client.get_node_from_key(key_prefix(settings))  # type: ignore[no-untyped-call]
            keys = list(client.scan_iter(match=pattern, target_nodes=node))
        else:
            keys = list(client.scan_iter(match=pattern))
        for key in keys:
            client.delete(key)
    finally:
        client.close()


@contextmanager
def redis_backend(
    tmp_path: Path,
    clock: Callable[[], float] | None,
    overrides: dict[str, Any],
    url: str | None = None,
) -> Iterator[RedisBackend]:
    url = url or server_url()
    prefix = new_prefix()
    settings = Settings.load(env={}, url=url, redis_prefix=prefix, **overrides)
    try:
        backend = RedisBackend(settings, clock=clock)
    except redis.ConnectionError as exc:
        raise RuntimeError(
            f"the Redis test server at {url} is unreachable ({exc}); start it or point "
            "CONVEYOR_TEST_REDIS_URL at one"
        ) from exc
    try:
        yield backend
    finally:
        backend.close()
        drop_prefix(url, prefix)


@contextmanager
def redis_cluster_backend(
    tmp_path: Path, clock: Callable[[], float] | None, overrides: dict[str, Any]
) -> Iterator[RedisBackend]:
    """A fresh key prefix on this session's private 3-master cluster (cluster.py)."""
    from tests.redis_engine.cluster import session_cluster

    with redis_backend(tmp_path, clock, overrides, session_cluster()) as backend:
        yield backend


@contextmanager
def redis_database() -> Iterator[tuple[str, str]]:
    """(URL, key prefix) of a fresh application on the test server, its keys deleted after."""
    url, prefix = server_url(), new_prefix()
    try:
        yield url, prefix
    finally:
        drop_prefix(url, prefix)
