"""Connecting to Redis: the client, the key prefix, and the safety check at connect.

A client retries a command that failed on a broken connection with capped, jittered backoff,
so a worker carries on by itself after a Redis restart. Every script is idempotent to retry
only in the sense that matters here: a script either ran whole or not at all, and a retried
claim or finish is fenced like any other (a finish retried after it was applied finds its
token gone and changes nothing). The enqueues are the exception: run twice, one writes its jobs
twice, so once sent whole they are not sent again (scripts.py): a connection lost before their
reply is BackendUnavailable, "may or may not have been written", as on PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from conveyor.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    ConveyorError,
    StorageFull,
)
from conveyor.settings import Settings

log = logging.getLogger(__name__)

#: Backoff between attempts of a command on a broken connection: 50 ms doubling to 2 s.
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 2.0
_RETRIES = 8


def key_prefix(settings: Settings) -> str:
    """The prefix of every key of this application. The braces are a hash tag: Redis Cluster
    puts every key of one prefix in one slot, so each script touches one node."""
    return f"{{conveyor:{settings.redis_prefix}}}"


def connect(settings: Settings, *, retries: int = _RETRIES) -> Any:
    """A client of the Redis server ``settings.url`` names (redis:// or rediss://), retrying
    a command ``retries`` times on a broken connection. A node of a Redis Cluster gets a
    cluster client, which sends each script to the node holding the prefix's slot."""
    client = _connect(settings, retries)
    try:
        cluster = cast("dict[str, Any]", client.info("cluster")).get("cluster_enabled") == 1
    except redis.ConnectionError as exc:
        client.close()
        raise BackendUnavailable(f"Redis at {settings.url} is unreachable: {exc}") from None
    if not cluster:
        return client
    client.close()
    return RedisCluster.from_url(  # type: ignore[no-untyped-call]
        settings.url,
        decode_responses=True,
        socket_connect_timeout=settings.lock_timeout,
        socket_timeout=settings.lock_timeout,
        socket_keepalive=True,
    )


def _connect(settings: Settings, retries: int) -> redis.Redis:
    retry = Retry(ExponentialWithJitterBackoff(cap=_BACKOFF_CAP, base=_BACKOFF_BASE), retries)
    options: dict[str, Any] = {}
    if retries:
        # The builtin ConnectionError too: redis-py retries a (re)connect only on the errors
        # listed here, and a refused connect surfaces as the builtin ConnectionRefusedError --
        # without it a command sent while a restarting server refuses connections failed at
        # once, with no retry at all.
        options["retry_on_error"] = [redis.ConnectionError, redis.TimeoutError, ConnectionError]
    try:
        client: redis.Redis = redis.Redis.from_url(
            settings.url,
            decode_responses=True,
            retry=retry,
            socket_connect_timeout=settings.lock_timeout,
            # A server that vanished (a host down, a network cut) fails the command within
            # lock_timeout instead of leaving it waiting for TCP's own timeouts.
            socket_timeout=settings.lock_timeout,
            socket_keepalive=True,
            health_check_interval=30,
            **options,
        )
    except ValueError as exc:
        raise ConfigurationError(f"invalid Redis URL {settings.url!r}: {exc}") from None
    return client


def check_eviction(client: Any, settings: Settings) -> None:
    """Refuse a server that may evict keys: under memory pressure it would delete jobs.
    ``redis_allow_eviction`` turns the refusal into a warning."""
    try:
        found = cast("dict[str, str]", client.config_get("maxmemory-policy"))
        policy = found.get("maxmemory-policy", "")
    except redis.ResponseError:
        # CONFIG is disabled or renamed (managed services): nothing to check against.
        log.warning("cannot read maxmemory-policy of %s (CONFIG GET refused)", settings.url)
        return
    except redis.RedisError as exc:
        raise BackendUnavailable(f"Redis at {settings.url} is unreachable: {exc}") from None
    if policy in ("noeviction", ""):
        return
    message = (
        f"Redis maxmemory-policy is {policy!r}: when memory runs short the server may delete "
        "keys, and so jobs (queued, running or their results) would vanish without a trace. "
        "Set `maxmemory-policy noeviction` on the server"
    )
    if not settings.redis_allow_eviction:
        raise ConfigurationError(
            message + ", or set redis_allow_eviction (CONVEYOR_REDIS_ALLOW_EVICTION=1) to run "
            "anyway"
        )
    log.warning("%s (running anyway: redis_allow_eviction is set)", message)


def translate(exc: redis.RedisError, url: str) -> ConveyorError:
    """A redis-py error as the engine's own."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return BackendUnavailable(f"Redis at {url} is unreachable: {exc}")
    text = str(exc)
    if text.startswith("OOM") or "used memory > 'maxmemory'" in text:
        # A script is refused at its first write (Redis lets one that has written go on to its
        # end): nothing of it was written.
        return StorageFull(f"Redis at {url} is out of memory (maxmemory): {text}")
    return BackendError(f"Redis at {url}: {text}")


class Reads:
    """The plain commands the engine sends besides its scripts (reads, mostly), typed: redis-py's
    annotations give every command a sync-or-async result. Errors come out as the engine's."""

    def __init__(self, client: Any, url: str) -> None:
        #: A redis.Redis, or a RedisCluster.
        self.client = client
        self._url = url

    def _do(self, command: str, *args: Any, **options: Any) -> Any:
        try:
            return getattr(self.client, command)(*args, **options)
        except redis.RedisError as exc:
            raise translate(exc, self._url) from exc

    def get(self, key: str) -> str | None:
        return cast("str | None", self._do("get", key))

    def put(self, key: str, value: str | int) -> None:
        self._do("set", key, value)

    def exists(self, key: str) -> bool:
        return bool(self._do("exists", key))

    def hget(self, key: str, name: str) -> str | None:
        return cast("str | None", self._do("hget", key, name))

    def hmget(self, key: str, names: Sequence[str]) -> list[str | None]:
        return cast("list[str | None]", self._do("hmget", key, list(names)))

    def hgetall(self, key: str) -> dict[str, str]:
        return cast("dict[str, str]", self._do("hgetall", key))

    def smembers(self, key: str) -> set[str]:
        return cast("set[str]", self._do("smembers", key))

    def zrange(self, key: str, start: int, end: int) -> list[str]:
        return cast("list[str]", self._do("zrange", key, start, end))

    def first_score(self, key: str) -> float | None:
        found = cast("list[tuple[str, float]]", self._do("zrange", key, 0, 0, withscores=True))
        return float(found[0][1]) if found else None

    def time(self) -> float:
        seconds, micros = cast("tuple[int, int]", self._do("time"))
        return seconds + micros / 1_000_000

    def many(self, command: str, keys: Sequence[str], *args: Any) -> list[Any]:
        """``command`` on each of ``keys`` (with ``args``) in one round trip."""
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    getattr(pipe, command)(key, *args)
                replies: list[Any] = pipe.execute()
                return replies
        except redis.RedisError as exc:
            raise translate(exc, self._url) from exc
