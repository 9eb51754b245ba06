"""The records of a snapshot: what a backup file holds, one JSON object a line, whatever engine
wrote it or will read it.

The first record is the header (``kind`` "header": the format version, the engine and time of
the snapshot, the highest job id ever handed out, and how many records of each kind follow).
Then, in this order, every queue's settings (caps, pauses, quiet hours, rate limits), breaker,
schedule, task rate limit bucket and retry budget, every job by id, and every dependency edge.
Times are UNIX seconds (a pause until resumed is "infinity"); payloads (arguments, results,
progress, checkpoints, errors) are JSON text kept byte for byte, as the engines store them.
Workers, their leases and leaderships are not part of a snapshot: they belong to the processes
of one database and mean nothing in another.

Engines export and import records as plain dicts holding exactly the fields listed here
(``FIELDS``); ``Intake`` is what every engine's import does with them. A reader refuses fields
it does not know: a migration that adds a column a snapshot must carry adds its field here and
raises FORMAT_VERSION, keeping a reader of the older version (its field defaulted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from conveyor.errors import SnapshotError

#: The version of the format written; restore refuses any other.
FORMAT_VERSION = 1

Record = dict[str, Any]

#: Field types: "int", "float", "bool", "str", "json" (JSON text), "time" (UNIX seconds, or
#: "infinity" in a file); a trailing "?" allows null.
JOB_FIELDS: dict[str, str] = {
    "id": "int",
    "queue": "str",
    "task": "str",
    "state": "str",
    "priority": "int",
    "attempts": "int",
    "max_attempts": "int",
    "lost_runs": "int",
    "cancel_requested": "bool",
    "suspect": "bool",
    "run_at": "time",
    "created_at": "time",
    "started_at": "time?",
    "finished_at": "time?",
    "lease_expires_at": "time?",
    "timeout": "float?",
    "lease_token": "str?",
    "worker_id": "str?",
    "idempotency_key": "str?",
    "rate_key": "str?",
    "dead_reason": "str?",
    "args": "json",
    "kwargs": "json",
    "result": "json?",
    "progress": "json?",
    "checkpoint": "json?",
    "errors": "json",
    "pending_parents": "int",
    "has_children": "bool",
    "on_parent_failure": "str?",
    "stopped_by": "int?",
    "workflow_id": "str?",
    "escalated_to": "int?",
    "escalated_from": "int?",
    "trace_context": "str?",
}

FIELDS: dict[str, dict[str, str]] = {
    "queue": {
        "queue": "str",
        "max_running": "int?",
        "paused_until": "time?",
        "quiet": "json?",
        "rate_count": "int?",
        "rate_per": "float?",
        "rate_next": "time?",
    },
    "breaker": {
        "name": "str",
        "state": "str",
        "tasks": "json",
        "recent": "json",
        "window_seconds": "float",
        "opened_at": "time?",
        "probe_at": "time?",
        "cooldown": "float?",
        "probe_job": "int?",
        "probe_token": "str?",
        "updated_at": "time",
    },
    "schedule": {
        "name": "str",
        "paused": "bool",
        "since": "time",
        "last_tick": "time?",
        "last_job_id": "int?",
        "last_enqueued_at": "time?",
    },
    "rate_bucket": {
        "task": "str",
        "key": "str",
        "rate_count": "int",
        "rate_per": "float",
        "rate_next": "time?",
    },
    "retry_budget": {"task": "str", "window_start": "time", "used": "int"},
    "job": JOB_FIELDS,
    "edge": {"parent_id": "int", "child_id": "int"},
}

#: The kinds, in the order a snapshot lists them (jobs before the edges between them).
KINDS = tuple(FIELDS)

#: Every kind has two fields or more: each getter returns a tuple.
_GETTERS = {kind: itemgetter(*fields) for kind, fields in FIELDS.items()}
_BOOLS = {kind: [n for n, t in fields.items() if t == "bool"] for kind, fields in FIELDS.items()}

#: How a summary names each kind.
_NOUNS = {
    "queue": ("queue setting", "queue settings"),
    "breaker": ("breaker", "breakers"),
    "schedule": ("schedule", "schedules"),
    "rate_bucket": ("rate limit bucket", "rate limit buckets"),
    "retry_budget": ("retry budget", "retry budgets"),
    "job": ("job", "jobs"),
    "edge": ("dependency", "dependencies"),
}


def record(kind: str, row: Iterable[Any]) -> Record:
    """A record of ``kind`` from a row of its fields in order (booleans as 0/1 or bool)."""
    values: Record = {"kind": kind}
    values.update(zip(FIELDS[kind], row, strict=True))
    for name in _BOOLS[kind]:
        values[name] = bool(values[name])
    return values


def row(kind: str, values: Record) -> tuple[Any, ...]:
    """The fields of a record in order, for an engine's import statement."""
    fields: tuple[Any, ...] = _GETTERS[kind](values)
    return fields


def header(
    *, engine: str, created_at: float, schema_version: int, last_id: int, counts: dict[str, int]
) -> Record:
    """The first record of a snapshot. ``last_id``: the highest job id the source ever handed
    out (pruned jobs included), which the target's ids must stay above."""
    return {
        "kind": "header",
        "format": FORMAT_VERSION,
        "engine": engine,
        "created_at": created_at,
        "schema_version": schema_version,
        "last_id": last_id,
        "counts": {kind: int(counts.get(kind, 0)) for kind in KINDS},
    }


def check_header(values: Record) -> Record:
    """``values`` if it is a header this Conveyor reads; SnapshotError otherwise."""
    if values.get("kind") != "header":
        raise SnapshotError("not a Conveyor backup: the first line is not its header")
    version = values.get("format")
    if version != FORMAT_VERSION:
        raise SnapshotError(
            f"backup format version {version!r} is unknown to this Conveyor (it reads version "
            f"{FORMAT_VERSION}): restore it with the Conveyor that wrote it, or a newer one"
        )
    counts = values.get("counts")
    last_id = values.get("last_id")
    if (
        not isinstance(counts, dict)
        or set(counts) != set(KINDS)
        or not all(type(n) is int and n >= 0 for n in counts.values())
        or type(last_id) is not int
        or last_id < 0
        or not isinstance(values.get("engine"), str)
        or type(values.get("created_at")) not in (int, float)
    ):
        raise SnapshotError(
            "the header of the backup is damaged (counts, last_id, engine or created_at)"
        )
    return values


@dataclass
class Summary:
    """What a backup wrote or a restore loaded: records by kind, and the jobs that were running
    in the source (``running``). A restore (``restored``) brings those back waiting, since
    their leases cannot move to another database."""

    engine: str
    #: When the snapshot was taken (the source's clock).
    taken_at: float
    counts: dict[str, int] = field(default_factory=dict)
    running: int = 0
    restored: bool = False

    def describe(self) -> str:
        """E.g. "1,204 jobs (12 running jobs restored as queued), 30 dependencies, 2 queue
        settings"."""
        parts = []
        for kind in KINDS:
            n = self.counts.get(kind, 0)
            if n or kind == "job":
                singular, plural = _NOUNS[kind]
                text = f"{n:,} {singular if n == 1 else plural}"
                if kind == "job" and self.running:
                    were = "job" if self.running == 1 else "jobs"
                    text += (
                        f" ({self.running:,} running {were} restored as queued)"
                        if self.restored
                        else f" ({self.running:,} running)"
                    )
                parts.append(text)
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "taken_at": self.taken_at,
            "counts": {kind: self.counts.get(kind, 0) for kind in KINDS},
            "running": self.running,
            "restored": self.restored,
        }


class Intake:
    """What every engine's ``import_snapshot`` does with the records, in batches of one kind:
    checks the header, turns running jobs back into waiting ones (as a release at shutdown
    does: their attempt back; a suspect waits as a suspect, a job someone asked to cancel
    ends cancelled), counts, and at the end checks the counts against the header, so that a
    cut-off file writes nothing."""

    def __init__(self, records: Iterable[Record], now: float) -> None:
        self._records = iter(records)
        first = next(self._records, None)
        if first is None:
            raise SnapshotError("the backup is empty: not even a header")
        self.header = check_header(first)
        self._now = now
        self.summary = Summary(
            engine=str(self.header["engine"]),
            taken_at=float(self.header["created_at"]),
            restored=True,
        )
        #: The highest job id imported.
        self.max_id = 0

    def batches(self, size: int = 2000) -> Iterator[tuple[str, list[Record]]]:
        """Runs of records of one kind, at most ``size`` long, in the order given."""
        counts = self.summary.counts
        kind = ""
        batch: list[Record] = []
        for values in self._records:
            next_kind = values["kind"]
            if next_kind not in FIELDS:
                raise SnapshotError(f"unknown record kind {next_kind!r} in the backup")
            if batch and (next_kind != kind or len(batch) >= size):
                yield kind, batch
                batch = []
            kind = next_kind
            if kind == "job":
                values = self._job(values)
            counts[kind] = counts.get(kind, 0) + 1
            batch.append(values)
        if batch:
            yield kind, batch

    def _job(self, values: Record) -> Record:
        self.max_id = max(self.max_id, values["id"])
        if values["state"] != "running":
            return values
        self.summary.running += 1
        values = dict(values, lease_token=None, lease_expires_at=None, worker_id=None)
        values["attempts"] = max(0, values["attempts"] - 1)
        if values["cancel_requested"]:
            values.update(state="cancelled", finished_at=self._now)
        else:
            values["state"] = "retrying" if values["suspect"] else "queued"
        return values

    @property
    def last_id(self) -> int:
        """The id the target's sequence must reach: above every job the source ever had."""
        return max(self.max_id, int(self.header["last_id"]))

    def finish(self) -> Summary:
        """The summary, once every record is in; SnapshotError if fewer or more records came
        than the header announced (a file cut short, or edited)."""
        expected = self.header["counts"]
        for kind in KINDS:
            got = self.summary.counts.get(kind, 0)
            if got != expected[kind]:
                raise SnapshotError(
                    f"the backup announces {expected[kind]:,} {_NOUNS[kind][1]} but holds "
                    f"{got:,}: it was cut short or edited; nothing was restored"
                )
        return self.summary


def finite_or_infinity(value: float | None) -> float | str | None:
    """A time as a file holds it: JSON has no infinity."""
    return "infinity" if value is not None and math.isinf(value) else value
