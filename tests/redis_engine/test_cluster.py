"""The Redis engine on a 3-master Redis Cluster that the test starts (cluster.py): one
application's keys sit in one slot, so each script runs on the node holding it. The whole
contract suite runs on the cluster with CONVEYOR_TEST_BACKENDS=redis_cluster."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis.connection import key_prefix
from conveyor.job import JobState
from conveyor.settings import Settings
from tests.contract.helpers import claim_one, enqueue, succeed
from tests.redis_engine.cluster import session_cluster
from tests.redis_engine.factory import drop_prefix, new_prefix
from tests.support import new_job


@pytest.fixture
def settings() -> Iterator[Settings]:
    url = session_cluster()
    found = Settings.load(env={}, url=url, redis_prefix=new_prefix())
    yield found
    drop_prefix(url, found.redis_prefix)


def test_jobs_run_on_a_cluster_with_their_keys_on_one_node(settings: Settings) -> None:
    backend = RedisBackend(settings)
    try:
        assert isinstance(backend._redis, redis.RedisCluster)
        job_id = enqueue(backend, queue="a")
        enqueue(backend, queue="b", delay=60)
        assert succeed(backend, claim_one(backend)).applied
        assert backend.get(job_id).state is JobState.SUCCEEDED
        client = backend._redis
        node = client.get_node_from_key(key_prefix(settings))  # type: ignore[no-untyped-call]
        pattern = key_prefix(settings).replace("{", "\\{").replace("}", "\\}") + ":*"
        here = list(client.scan_iter(match=pattern, target_nodes=node))
        everywhere = list(client.scan_iter(match=pattern, target_nodes=client.ALL_NODES))
        assert len(here) > 5
        assert sorted(here) == sorted(everywhere)
    finally:
        backend.close()


def test_wake_ups_reach_other_processes_through_the_cluster(settings: Settings) -> None:
    waiting = RedisBackend(settings)
    enqueuing = RedisBackend(settings)
    try:
        woken = threading.Event()
        waiting.add_listener(lambda queues: woken.set() if "mail" in queues else None)
        waiting.change_marker()  # subscribes
        assert waiting._listener.connected.wait(5)
        enqueuing.enqueue_many([new_job(queue="mail")])
        assert woken.wait(5)
    finally:
        waiting.close()
        enqueuing.close()
