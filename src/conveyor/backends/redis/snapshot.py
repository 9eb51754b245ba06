"""Backup and restore on Redis (see conveyor/snapshot/).

Redis has no read transaction, so the export freezes one moment first: a single script
(lua/snapshot_freeze.lua) copies every job hash, every set of children and the id index under
a key of its own, and returns the queue settings, breakers, schedules, buckets and budgets of
that same moment. The export then streams the copy in chunks, by id (no SCAN), while workers go
on, and deletes it when done or closed (a copy whose exporter died is deleted by an export a
day later). The snapshot is as consistent as the SQL engines' read transactions: every job in the
state it had at that moment, parents and children agreeing. Its cost: the server is busy with
the freeze script (two commands per job: see bench/engine_copy.py --redis), and holds a second
copy of the jobs until the export ends.

The import writes into a store holding no job, queue setting, breaker, schedule or bucket
(TargetNotEmpty), one script per batch, and on any failure (a damaged file included) deletes
everything it wrote and puts the id counter back, so that a failed import leaves nothing
behind. Redis has no transaction for it: a process that writes to the same keys meanwhile (an
enqueue into the store being restored) is not kept out.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from conveyor.errors import TargetNotEmpty
from conveyor.snapshot.records import (
    FIELDS,
    JOB_FIELDS,
    Intake,
    Record,
    Summary,
    header,
    record,
)

#: Jobs read (or written) per round trip.
_CHUNK = 1000
#: Seconds after which a frozen copy is taken for one whose exporter died (and deleted).
_STALE = 86400

Run = Callable[..., Any]
Many = Callable[..., list[Any]]

#: How a breaker's fields are named in its hash.
_BREAKER_FIELDS = {"window_seconds": "window"}


def _value(type_: str, text: str | None) -> Any:
    """The record value of a hash field's text."""
    if text is None:
        return None
    base = type_.rstrip("?")
    if base == "int":
        return int(text)
    if base in ("float", "time"):
        return float(text)
    if base == "bool":
        return text == "1"
    return text


#: Job fields Redis leaves out of a hash while they hold their default.
_JOB_DEFAULTS = {
    "attempts": "0",
    "lost_runs": "0",
    "errors": "[]",
    "pending_parents": "0",
    "cancel_requested": "0",
    "suspect": "0",
    "has_children": "0",
}


def _job(h: dict[str, str]) -> Record:
    return record(
        "job",
        [_value(type_, h.get(name, _JOB_DEFAULTS.get(name))) for name, type_ in JOB_FIELDS.items()],
    )


def _hash_record(kind: str, h: dict[str, str]) -> Record:
    return record(
        kind,
        [
            _value(type_, h.get(_BREAKER_FIELDS.get(name, name)))
            for name, type_ in FIELDS[kind].items()
        ],
    )


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def export_records(run: Run, many: Many, prefix: str) -> Iterator[Record]:
    """The records of the store under ``prefix``, as of one moment (the module's docstring)."""
    token = secrets.token_hex(8)
    snap = f"{prefix}:snap:{token}"
    reply = run("snapshot_freeze", token, _STALE)
    seq, now, layout, jobs, gates, breakers, schedules, buckets, stale = reply
    jobs = int(jobs)
    try:
        for old in stale:
            _drop(many, prefix, old)
        edges, tasks = _edges_and_tasks(many, snap, jobs)
        # Redis keeps no list of budgets: those of the tasks that have jobs, read just after
        # the freeze (a budget only counts retries, and no job is in this snapshot twice).
        found = many("hgetall", [f"{prefix}:budget:{task}" for task in tasks])
        small = {
            "queue": [
                _hash_record("queue", {"queue": name, **_pairs(flat)})
                for name, flat in sorted(gates)
            ],
            "breaker": [_hash_record("breaker", _pairs(flat)) for _, flat in sorted(breakers)],
            "schedule": [_hash_record("schedule", _pairs(flat)) for _, flat in sorted(schedules)],
            "rate_bucket": sorted(
                (_hash_record("rate_bucket", _pairs(flat)) for _, flat in buckets),
                key=lambda r: (r["task"], r["key"]),
            ),
            "retry_budget": [
                _hash_record("retry_budget", {"task": task, **h})
                for task, h in zip(tasks, found, strict=True)
                if h
            ],
        }
        counts = {kind: len(rows) for kind, rows in small.items()}
        counts.update(job=jobs, edge=edges)
        yield header(
            engine="redis",
            created_at=float(now),
            schema_version=int(layout),
            last_id=int(seq),
            counts=counts,
        )
        for rows in small.values():
            yield from rows
        for ids in _chunks(many, snap, jobs):
            for h in many("hgetall", [f"{snap}:job:{i}" for i in ids]):
                yield _job(h)
        for ids in _chunks(many, snap, jobs):
            found = many("smembers", [f"{snap}:children:{i}" for i in ids])
            for parent, children in zip(ids, found, strict=True):
                for child in sorted(map(int, children)):
                    yield record("edge", (parent, child))
    finally:
        _drop(many, prefix, token)


def _edges_and_tasks(many: Many, snap: str, jobs: int) -> tuple[int, list[str]]:
    """How many edges the frozen copy holds, and the tasks of its jobs (for the header)."""
    edges, tasks = 0, set()
    for ids in _chunks(many, snap, jobs):
        edges += sum(many("scard", [f"{snap}:children:{i}" for i in ids]))
        tasks.update(many("hget", [f"{snap}:job:{i}" for i in ids], "task"))
    return edges, sorted(tasks)


def _chunks(many: Many, snap: str, jobs: int | None = None) -> Iterator[list[int]]:
    """The ids of the frozen index, a chunk at a time, in order (``jobs``: how many it holds,
    None: until it ends)."""
    start = 0
    while jobs is None or start < jobs:
        [ids] = many("zrange", [f"{snap}:jobs"], start, start + _CHUNK - 1)
        if not ids:
            return
        yield [int(i) for i in ids]
        start += _CHUNK


def _drop(many: Many, prefix: str, token: str) -> None:
    """Delete the frozen copy ``token`` (its index last, since it lists the rest)."""
    snap = f"{prefix}:snap:{token}"
    for ids in _chunks(many, snap):
        many("unlink", [k for i in ids for k in (f"{snap}:job:{i}", f"{snap}:children:{i}")])
    many("unlink", [f"{snap}:jobs"])
    many("zrem", [f"{prefix}:snaps"], token)


def _text(type_: str, value: Any) -> str | None:
    """A record value as a hash field's text (None: the field is left out)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) or type_.rstrip("?") in ("float", "time"):
        value = float(value)
        if math.isinf(value):
            return "inf"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def _fields(kind: str, values: Record, skip: Sequence[str] = ()) -> dict[str, str]:
    out = {}
    for name, type_ in FIELDS[kind].items():
        text = _text(type_, values[name])
        if text is not None and name not in skip:
            out[_BREAKER_FIELDS.get(name, name) if kind == "breaker" else name] = text
    return out


def _hash_rows(kind: str, batch: list[Record]) -> list[list[Any]]:
    """[key, fields, [index set, member] ...] of the kinds other than jobs and edges."""
    rows: list[list[Any]] = []
    for r in batch:
        if kind == "queue":
            gated = any(r[n] is not None for n in ("max_running", "paused_until", "quiet"))
            gated = gated or r["rate_count"] is not None
            row = [f"gate:{r['queue']}", _fields(kind, r, ("queue",)), ["gate_rows", r["queue"]]]
            if gated:
                row.append(["gated", r["queue"]])
        elif kind == "breaker":
            row = [f"breaker:{r['name']}", _fields(kind, r), ["breakers", r["name"]]]
            if r["state"] != "closed":
                row.append(["unsettled", r["name"]])
        elif kind == "schedule":
            row = [f"schedule:{r['name']}", _fields(kind, r), ["schedules", r["name"]]]
        elif kind == "rate_bucket":
            name = f"{r['task']}\n{r['key']}"
            row = [f"bucket:{name}", _fields(kind, r), ["buckets", name]]
        else:
            row = [f"budget:{r['task']}", _fields(kind, r, ("task",))]
        rows.append(row)
    return rows


def import_records(run: Run, records: Iterable[Record], now: float, prefix: str) -> Summary:
    """Write the snapshot ``records`` into the empty store under ``prefix``: all or nothing."""
    held, seq = run("snapshot_restore", "check")
    if held:
        raise TargetNotEmpty(
            f"the Redis key prefix {prefix} already holds jobs or queue settings: restore "
            "into an empty one (a new key prefix)"
        )
    intake = Intake(records, now)
    budgets: list[str] = []
    try:
        for kind, batch in intake.batches(_CHUNK):
            if kind == "job":
                rows = [_fields("job", r) for r in batch]
                run("snapshot_restore", "jobs", json.dumps(rows))
            elif kind == "edge":
                edges = [[str(r["parent_id"]), str(r["child_id"])] for r in batch]
                run("snapshot_restore", "edges", json.dumps(edges))
            else:
                if kind == "retry_budget":
                    budgets += [r["task"] for r in batch]
                run("snapshot_restore", "hashes", json.dumps(_hash_rows(kind, batch)))
        summary = intake.finish()
        run("snapshot_restore", "seq", intake.last_id)
    except BaseException:
        while int(run("snapshot_restore", "undo_jobs")):
            pass
        run("snapshot_restore", "undo_rest", seq, json.dumps(budgets))
        raise
    return summary
