"""The Redis layout of the per-minute aggregates (lua/tally.lua) and of trace contexts: the
runs a finish ends are tallied by that very script into one hash per minute, listed in one
sorted set, and a job enqueued without a trace context carries no field for it. What they
mean is the contract suite's (tests/contract/test_aggregates.py, test_trace_context.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest
import redis

from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis.connection import key_prefix
from conveyor.backends.tally import minute_of
from conveyor.settings import Settings
from tests.contract.helpers import claim_one, enqueue, succeed
from tests.redis_engine.factory import drop_prefix, new_prefix, server_url
from tests.support import FakeClock


@pytest.fixture
def backend() -> Iterator[RedisBackend]:
    url = server_url()
    found = RedisBackend(
        Settings.load(env={}, url=url, redis_prefix=new_prefix()), clock=FakeClock()
    )
    yield found
    found.close()
    drop_prefix(url, found.settings.redis_prefix)


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    found = redis.Redis.from_url(server_url(), decode_responses=True)
    yield found
    found.close()


def test_a_finish_tallies_into_the_hash_of_its_minute(
    backend: RedisBackend, client: redis.Redis
) -> None:
    enqueue(backend, task="t", queue="q")
    assert succeed(backend, claim_one(backend)).applied
    prefix = key_prefix(backend.settings)
    minute = str(minute_of(backend.now()))
    assert client.zrange(f"{prefix}:minutes", 0, -1) == [minute]
    fields = cast("dict[str, str]", client.hgetall(f"{prefix}:minute:{minute}"))
    assert fields["q\x1ft\x1fsucceeded"] == "1"
    # One bucket (r0..r10, w0..w10) of each histogram holds the run; the counts are their sum.
    buckets = {k.rsplit("\x1f", 1)[1]: int(v) for k, v in fields.items() if k[-1].isdigit()}
    assert sum(v for k, v in buckets.items() if k[0] == "r") == 1
    assert sum(v for k, v in buckets.items() if k[0] == "w") == 1


def test_only_a_job_enqueued_with_a_trace_context_stores_one(
    backend: RedisBackend, client: redis.Redis
) -> None:
    plain = enqueue(backend)
    traced = enqueue(
        backend, trace_context="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    )
    prefix = key_prefix(backend.settings)
    assert not client.hexists(f"{prefix}:job:{plain}", "trace_context")
    assert client.hexists(f"{prefix}:job:{traced}", "trace_context")
