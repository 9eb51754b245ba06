"""Backup and restore on Redis (see conveyor/snapshot/).

Redis has no read transaction, so the export freezes one moment first: a single script
(lua/snapshot_freeze.lua) copies every job hash, every set of children and the id index under
a key of its own, and returns the queue settings, breakers, schedules and buckets of that same
moment. The export then reads the copy a chunk of ids at a time (lua/snapshot_read.lua; its id
index, no SCAN) while workers go on, and deletes it when done or closed (a copy whose exporter
died is deleted by an export a day later). The snapshot is as consistent as the SQL engines'
read transactions: every job in the state it had at that moment, each exactly once, parents
and children agreeing. Retry budgets, which Redis lists nowhere, are those of the tasks of the
copy's jobs, read just after the freeze. Its cost: the server serves nobody else during the
freeze script (two COPYs a job: see bench/engine_copy.py --redis), and holds a second copy of
the jobs until the export ends.

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
    return _CONVERT[type_.rstrip("?")](text)


def _is_set(text: str) -> bool:
    return text == "1"


#: From a hash field's text, by field type (JSON text stays as it is).
_CONVERT: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "time": float,
    "bool": _is_set,
    "str": str,
    "json": str,
}

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
#: Each job field's name, default text and conversion, in record order.
_JOB_READ = [
    (name, _JOB_DEFAULTS.get(name), _CONVERT[type_.rstrip("?")])
    for name, type_ in JOB_FIELDS.items()
]


def _job(h: dict[str, str]) -> Record:
    values: Record = {"kind": "job"}
    for name, default, convert in _JOB_READ:
        text = h.get(name, default)
        values[name] = None if text is None else convert(text)
    return values


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
    reply = run("snapshot_freeze", token, _STALE)
    seq, now, layout, jobs, gates, breakers, schedules, buckets, stale = reply
    jobs = int(jobs)
    try:
        for old in stale:
            _drop(run, old)
        edges, tasks = _edges_and_tasks(run, token)
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
        for first in range(0, jobs, _CHUNK):
            for flat in run("snapshot_read", "jobs", token, first, _CHUNK):
                yield _job(_pairs(flat))
        for first in range(0, jobs, _CHUNK):
            for parent, children in run("snapshot_read", "edges", token, first, _CHUNK):
                for child in sorted(map(int, children)):
                    yield record("edge", (int(parent), child))
    finally:
        _drop(run, token)


def _edges_and_tasks(run: Run, token: str) -> tuple[int, list[str]]:
    """How many edges the frozen copy holds, and the tasks of its jobs (for the header)."""
    edges, first = 0, 0
    tasks: set[str] = set()
    while True:
        ids, found, *names = run("snapshot_read", "count", token, first, _CHUNK)
        if not ids:
            return edges, sorted(tasks)
        edges += int(found)
        tasks.update(names)
        first += _CHUNK


def _drop(run: Run, token: str) -> None:
    """Delete the frozen copy ``token``, a chunk at a time."""
    while int(run("snapshot_read", "drop", token, 0, _CHUNK)):
        pass


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
