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
from conveyor.backends.redis.connection import key_prefix
from conveyor.settings import Settings

DEFAULT_SERVER = "redis://127.0.0.1:6379/0"


def server_url() -> str:
    return os.environ.get("CONVEYOR_TEST_REDIS_URL", DEFAULT_SERVER)


def new_prefix() -> str:
    return f"test_{os.getpid()}_{secrets.token_hex(4)}"


def drop_prefix(url: str, prefix: str) -> None:
    """Delete every key of ``prefix``."""
    pattern = key_prefix(Settings(url=url, redis_prefix=prefix)) + ":*"
    client = redis.Redis.from_url(url)
    try:
        batch = list(client.scan_iter(match=pattern.replace("{", "\\{").replace("}", "\\}")))
        for start in range(0, len(batch), 500):
            client.delete(*batch[start : start + 500])
    finally:
        client.close()


@contextmanager
def redis_backend(
    tmp_path: Path, clock: Callable[[], float] | None, overrides: dict[str, Any]
) -> Iterator[RedisBackend]:
    url = server_url()
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
