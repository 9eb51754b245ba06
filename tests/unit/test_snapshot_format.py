"""The backup format (conveyor/snapshot/records.py, files.py) without a database engine
behind it, and that each engine's snapshot.sql names every kind with its fields in order."""

from __future__ import annotations

import json
import math
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conveyor.backends.sql import load_queries
from conveyor.backends.sqlite.backend import MIGRATIONS, split_statements
from conveyor.errors import SnapshotError
from conveyor.snapshot.files import read_snapshot, write_snapshot
from conveyor.snapshot.records import (
    FIELDS,
    FORMAT_VERSION,
    KINDS,
    Intake,
    Record,
    header,
    record,
)

ENGINES = ("conveyor.backends.sqlite", "conveyor.backends.postgres")


def a_job(**changes: Any) -> Record:
    example = {"int": 1, "str": "x", "bool": False, "json": "[]", "time": 1.5, "float": 2.0}
    job = record("job", [example[type_.rstrip("?")] for type_ in FIELDS["job"].values()])
    job["state"] = "queued"
    job.update(changes)
    return job


def snapshot_of(*records: Record, **counts: int) -> list[Record]:
    return [
        header(engine="test", created_at=1.0, schema_version=1, last_id=9, counts=counts),
        *records,
    ]


@pytest.mark.parametrize("package", ENGINES)
def test_every_kind_has_its_queries(package: str) -> None:
    queries = load_queries(package, "snapshot.sql")
    for kind in KINDS:
        assert f"snapshot_{kind}" in queries and f"restore_{kind}" in queries
        # The restore names the columns in the order of the record's fields.
        columns = re.search(r"conveyor_\w+\s*\(([^)]*)\)", queries[f"restore_{kind}"])
        assert columns is not None
        assert [c.strip() for c in columns[1].split(",")] == list(FIELDS[kind])


def test_the_sqlite_queries_compile_with_a_column_per_field() -> None:
    db = sqlite3.connect(":memory:")
    for _, _, script in MIGRATIONS:
        for statement in split_statements(script):
            db.execute(statement)
    db.execute(load_queries("conveyor.backends.sqlite")["create_migrations_table"])
    queries = load_queries("conveyor.backends.sqlite", "snapshot.sql")
    assert len(db.execute(queries["snapshot_counts"]).fetchone()) == len(KINDS) + 2
    for kind in KINDS:
        cursor = db.execute(queries[f"snapshot_{kind}"])
        assert len(cursor.description) == len(FIELDS[kind])
        db.execute(f"EXPLAIN {queries[f'restore_{kind}']}", [None] * len(FIELDS[kind]))


def test_a_pause_until_resumed_is_written_as_infinity(tmp_path: Path) -> None:
    queue = record("queue", ["q", None, math.inf, None, None, None, None])
    summary = write_snapshot(snapshot_of(queue, queue=1), tmp_path / "b.jsonl")
    assert summary.counts == {"queue": 1}
    line = (tmp_path / "b.jsonl").read_text().splitlines()[1]
    assert json.loads(line)["paused_until"] == "infinity"
    [_, back] = list(read_snapshot(tmp_path / "b.jsonl"))
    assert back == queue


GOOD = a_job()
BAD = {
    "extra": dict(GOOD, color="blue"),
    "missing": {k: v for k, v in GOOD.items() if k != "task"},
    "a bool for an int": dict(GOOD, priority=True),
    "an int for a bool": dict(GOOD, suspect=1),
    "text that is not JSON": dict(GOOD, args="[1,"),
    "a null where none may be": dict(GOOD, queue=None),
    "an unknown state": dict(GOOD, state="limbo"),
    "an unknown kind": dict(GOOD, kind="gadget"),
}


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD)
def test_a_record_must_match_its_fields(tmp_path: Path, bad: Record) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in snapshot_of(GOOD, bad, job=2)) + "\n")
    records = read_snapshot(path)
    with pytest.raises(SnapshotError, match="line 3: "):
        list(records)


def test_a_damaged_header_or_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text("")
    with pytest.raises(SnapshotError, match="empty"):
        read_snapshot(path)
    path.write_text(json.dumps({"kind": "header", "format": FORMAT_VERSION}) + "\n")
    with pytest.raises(SnapshotError, match="line 1: the header of the backup is damaged"):
        read_snapshot(path)
    path.write_text(json.dumps(a_job()) + "\n")
    with pytest.raises(SnapshotError, match="line 1: not a Conveyor backup"):
        read_snapshot(path)


def test_the_intake_gives_running_jobs_back() -> None:
    running = a_job(
        state="running", attempts=2, lease_token="t", lease_expires_at=5.0, worker_id="w"
    )
    suspect = dict(running, id=2, suspect=True)
    cancelling = dict(running, id=3, cancel_requested=True)
    intake = Intake(iter(snapshot_of(running, suspect, cancelling, job=3)), now=100.0)
    [(kind, jobs)] = list(intake.batches())
    assert kind == "job"
    assert [(j["state"], j["attempts"], j["lease_token"], j["worker_id"]) for j in jobs] == [
        ("queued", 1, None, None),
        ("retrying", 1, None, None),
        ("cancelled", 1, None, None),
    ]
    assert jobs[2]["finished_at"] == 100.0
    summary = intake.finish()
    assert (summary.running, summary.restored) == (3, True)
    assert summary.describe() == "3 jobs (3 running jobs restored as queued)"
    assert intake.last_id == 9  # the header's, above every job's


def test_the_intake_checks_the_counts() -> None:
    intake = Intake(iter(snapshot_of(a_job(), job=2)), now=0.0)
    list(intake.batches())
    with pytest.raises(SnapshotError, match="announces 2 jobs but holds 1"):
        intake.finish()


#: Tables a snapshot carries, by kind; those it leaves out on purpose, and why.
TABLES = {
    "queue": "conveyor_queue_limits",
    "breaker": "conveyor_breakers",
    "schedule": "conveyor_schedules",
    "rate_bucket": "conveyor_rate_buckets",
    "retry_budget": "conveyor_retry_budgets",
    "job": "conveyor_jobs",
    "edge": "conveyor_job_edges",
}
LEFT_OUT = {
    "conveyor_workers": "the processes of one database",
    "conveyor_leaders": "leases of those processes",
    "conveyor_migrations": "the target has its own",
    # Per-minute history of the source's workers; the target's counters start from its own
    # runs (the jobs themselves, with their times, move).
    "conveyor_minute_stats": "history of the source's workers",
    "conveyor_stats_totals": "history of the source's workers",
    "conveyor_stats_marks": "watermarks into the source's ids",
}
#: Columns of carried tables a snapshot leaves out: a lease on the source machine's boot clock
#: means nothing elsewhere, and a restore clears every lease.
LEFT_OUT_COLUMNS = {"conveyor_jobs": {"lease_boot", "lease_expires_uptime"}}


def test_a_snapshot_carries_every_table_and_column_of_the_schema() -> None:
    """A migration that adds a table or a column fails here until the snapshot carries it
    (records.FIELDS, both snapshot.sql files) or this test says why it need not."""
    db = sqlite3.connect(":memory:")
    for _, _, script in MIGRATIONS:
        for statement in split_statements(script):
            db.execute(statement)
    tables = {
        name
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if name.startswith("conveyor_")
    }
    assert tables == set(TABLES.values()) | set(LEFT_OUT) - {"conveyor_migrations"}
    for kind, table in TABLES.items():
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        assert columns - LEFT_OUT_COLUMNS.get(table, set()) == set(FIELDS[kind]), table
