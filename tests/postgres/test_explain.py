"""The hot-path queries use the indexes made for them, on a big table, in the plans the server
makes for one execution (custom) and the ones it may switch to once psycopg has prepared the
statement (generic).

The table holds CONVEYOR_TEST_EXPLAIN_JOBS jobs (default 1,000,000), one in ten succeeded, one
in a hundred running. To load it in seconds, the secondary indexes are dropped, the rows
generated server-side, and the indexes rebuilt from their own catalog definitions;
verify_schema() then proves the schema is exactly what the migrations make.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.connection import Q
from conveyor.backends.sql import parse_queries
from tests.postgres.conftest import Connection, inspect
from tests.postgres.factory import postgres_backend

E = parse_queries((Path(__file__).parent / "explain.sql").read_text(encoding="utf-8"))
JOBS = int(os.environ.get("CONVEYOR_TEST_EXPLAIN_JOBS", "1000000"))

Plan = dict[str, Any]


def _session(backend: PostgresBackend) -> Connection:
    conn = inspect(backend)
    conn.execute(E["bulk_session"])
    return conn


def _load(backend: PostgresBackend, jobs: int) -> None:
    with _session(backend) as conn:
        indexes = conn.execute(E["secondary_indexes"]).fetchall()
        for name, _ in indexes:
            conn.execute(sql.SQL(E["drop_index"]).format(index=sql.Identifier(str(name))))

    def load(part: int) -> None:
        first, last = part * jobs // 2 + 1, (part + 1) * jobs // 2
        with _session(backend) as conn:
            conn.execute(E["load_jobs"], {"first": first, "last": last})

    def build(definition: str) -> None:
        with _session(backend) as conn:
            conn.execute(definition.encode())  # the server's own CREATE INDEX text

    # Two sessions: the machine's two cores.
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(load, range(2)))
        list(pool.map(build, [str(definition) for _, definition in indexes]))
    with _session(backend) as conn:
        conn.execute(E["analyze"])


@pytest.fixture(scope="module")
def big() -> Iterator[PostgresBackend]:
    with postgres_backend(None, None, {}) as backend:
        started = time.perf_counter()
        _load(backend, JOBS)
        elapsed = time.perf_counter() - started
        print(f"\nloaded {JOBS:,} jobs and rebuilt the indexes in {elapsed:.1f}s")
        yield backend


def _nodes(plan: Plan) -> Iterator[Plan]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _plan_of(row: tuple[object, ...] | None) -> Plan:
    """The plan in the one row of EXPLAIN (FORMAT JSON): a list holding one document."""
    assert row is not None
    [documents] = row
    assert isinstance(documents, list) and len(documents) == 1
    [document] = documents
    assert isinstance(document, dict)
    plan: Plan = document["Plan"]
    return plan


def _explain_custom(backend: PostgresBackend, query: str, params: dict[str, Any]) -> Plan:
    """EXPLAIN ANALYZE of one execution, rolled back."""
    with inspect(backend) as conn, conn.transaction(force_rollback=True):
        row = conn.execute(E["explain_analyze"] + "\n" + Q[query], params).fetchone()
    return _plan_of(row)


def _explain_generic(backend: PostgresBackend, query: str, params: dict[str, Any]) -> Plan:
    """The generic plan of the statement as psycopg prepares it, rolled back."""
    with inspect(backend) as conn, conn.transaction(force_rollback=True):
        conn.execute(E["force_generic_plans"])
        conn.execute(Q[query], params, prepare=True)
        row = conn.execute(E["latest_prepared_statement"]).fetchone()
        assert row is not None
        # The statement's parameters in the order psycopg numbered them: first appearance.
        names = sorted(params, key=lambda name: Q[query].index(f"%({name})"))
        explain = sql.SQL(E["explain_execute"]).format(
            name=sql.Identifier(str(row[0])),
            arguments=sql.SQL(", ").join(sql.Literal(params[name]) for name in names),
        )
        result = conn.execute(explain).fetchone()
    return _plan_of(result)


def _assert_uses(plan: Plan, index: str) -> list[Plan]:
    """No sequential scan of the jobs table; ``index`` (or one of "a|b") is used."""
    nodes = list(_nodes(plan))
    seq = [n for n in nodes if n["Node Type"] == "Seq Scan"]
    assert not [n for n in seq if n.get("Relation Name") == "conveyor_jobs"], f"seq scan: {plan}"
    using = [n for n in nodes if n.get("Index Name") in index.split("|")]
    assert using, f"{index} not used: {[(n['Node Type'], n.get('Index Name')) for n in nodes]}"
    return using


NOW = {"now": None}
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("claim_any", {**NOW, "lease": 30.0, "worker_id": "w", "limit": 10}, "conveyor_jobs_ready"),
    (
        "claim_queue",
        {**NOW, "lease": 30.0, "worker_id": "w", "limit": 10, "queue": "q3"},
        "conveyor_jobs_ready_by_queue",
    ),
    ("promote_due", NOW, "conveyor_jobs_due"),
    # Poison isolation: suspects from their own (almost always empty) index.
    ("pick_suspect", {**NOW, "queues": None, "closed": [], "held": []}, "conveyor_jobs_suspects"),
    # Busy workers ask about once a second whether a suspect waits: the same index.
    ("peek_suspect", {**NOW, "queues": None, "closed": [], "held": []}, "conveyor_jobs_suspects"),
    ("next_due", {}, "conveyor_jobs_due"),
    ("rescue_expired", {**NOW, "exclude": None}, "conveyor_jobs_leases"),
    # The index of running jobs (there is no index of lease tokens: migration 13).
    ("rescue_dead_workers", {**NOW, "workers": ["w1", "w2"]}, "conveyor_jobs_leases"),
    ("extend_leases", {**NOW, "lease": 30.0, "tokens": ["a", "b"]}, "conveyor_jobs_leases"),
    # Workers ask several times a second: an index of cancel-requested running jobs only.
    ("cancel_requests", {"worker_id": "w"}, "conveyor_jobs_cancel_requested"),
    # Every worker looks about once a second, held runs or not: its own row by primary key.
    ("worker_stop_requested", {"id": "w"}, "conveyor_workers_pkey"),
    (
        "finish_succeeded",
        {
            **NOW,
            "ids": [5, 7],
            "tokens": ["a", "b"],
            "results": ["1", "2"],
            "channel": "explain_jobs",
        },
        "conveyor_jobs_pkey|conveyor_jobs_lease_token",
    ),
    # A parent's end finds its children by the edges' primary key, never by a scan.
    ("blocked_children", {"parents": [5, 7]}, "conveyor_job_edges_pkey"),
    ("release_children", {**NOW, "parents": [5, 7]}, "conveyor_job_edges_pkey"),
    ("find_idempotent_any", {"keys": ["k1", "k2"]}, "conveyor_jobs_idempotency_any"),
    # Backpressure: no sequential scan anywhere, the queued jobs counted in the ready index.
    ("queue_depth", {"queue": "q3"}, "conveyor_jobs_ready_by_queue"),
    ("prune", {**NOW, "older_than": 60.0, "batch": 1000}, "conveyor_jobs_finished"),
    # Caps: the queues with ready jobs by a loose scan, the running jobs of a capped queue
    # from the index of running jobs keyed by queue, and the global claim around capped queues.
    ("ready_queues", {}, "conveyor_jobs_ready_by_queue"),
    ("queue_gates", {**NOW, "queues": ["q3"]}, "conveyor_jobs_leases"),
    (
        "claim_any_except",
        {**NOW, "lease": 30.0, "worker_id": "w", "limit": 10, "capped": ["q3"]},
        "conveyor_jobs_ready",
    ),
    # Rate limits of tasks: the jobs of a bucket from their own index, those a claim picked
    # by primary key.
    (
        "pick_rate_limited",
        {**NOW, "any_queue": True, "queues": [], "limit": 10, "held": [], "only": None},
        "conveyor_jobs_rate_ready",
    ),
    ("next_rate_token", {**NOW, "any_queue": False, "queues": ["q3"]}, "conveyor_jobs_rate_ready"),
    ("queues_of", {"ids": [5, 7]}, "conveyor_jobs_pkey"),
    (
        "claim_ids",
        {**NOW, "lease": 30.0, "worker_id": "w", "ids": [5, 7]},
        "conveyor_jobs_pkey",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("query", "params", "index"), CASES, ids=[c[0] for c in CASES])
def test_hot_queries_use_their_index(
    big: PostgresBackend, query: str, params: dict[str, Any], index: str
) -> None:
    _assert_uses(_explain_custom(big, query, params), index)
    if params:  # without parameters, the generic plan is the custom one
        _assert_uses(_explain_generic(big, query, params), index)


@pytest.mark.slow
@pytest.mark.parametrize("query", ["claim_any", "claim_queue"])
def test_claim_reads_only_the_rows_it_takes(big: PostgresBackend, query: str) -> None:
    """The claim walks the partial index of queued jobs and stops at LIMIT: the 100,000
    succeeded jobs, which sort first by priority, are never read."""
    params = {**NOW, "lease": 30.0, "worker_id": "w", "limit": 10, "queue": "q3"}
    [scan] = _assert_uses(_explain_custom(big, query, params), CASES[query == "claim_queue"][2])
    assert scan["Actual Rows"] == 10
    assert scan.get("Rows Removed by Filter", 0) == 0


@pytest.mark.slow
def test_the_rebuilt_schema_is_what_the_migrations_make(big: PostgresBackend) -> None:
    status = big.verify_schema()
    assert status.ok, status.problems


@pytest.mark.slow
def test_the_backend_claims_the_best_jobs_of_a_big_table(big: PostgresBackend) -> None:
    claimed = big.claim("w", None, 5, 30.0)
    assert [c.priority for c in claimed] == [4] * 5
    started = time.perf_counter()
    for _ in range(20):
        big.claim("w", ["q3"], 10, 30.0)
    assert time.perf_counter() - started < 5.0, "claims on a big table must stay fast"
