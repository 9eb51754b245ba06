"""Backup and restore on PostgreSQL (see conveyor/snapshot/), each on a session of its own
outside the pool: the export is one REPEATABLE READ, READ ONLY transaction streaming the jobs
through a server-side cursor, so that a long backup neither holds a pooled connection nor
keeps anything but one batch in memory; the import is one transaction that locks the tables
against writes, checks that they are empty and COPYs the jobs in."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import IsolationLevel

from conveyor.backends.postgres.connection import Connection
from conveyor.backends.sql import load_queries
from conveyor.errors import TargetNotEmpty
from conveyor.snapshot.records import (
    JOB_FIELDS,
    KINDS,
    Intake,
    Record,
    Summary,
    header,
    record,
    row,
)

#: The queries of snapshots.
QS = load_queries("conveyor.backends.postgres", "snapshot.sql")
#: Rows a server-side cursor sends at a time while exporting.
_FETCH = 2000
#: The positions of the time fields of a job, which COPY takes as timestamps.
_JOB_TIMES = tuple(i for i, type_ in enumerate(JOB_FIELDS.values()) if type_.startswith("time"))


def export_records(conn: Connection) -> Iterator[Record]:
    """The records of the schema ``conn`` is set up for, in one snapshot transaction."""
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    with conn.transaction():
        counts_row = conn.execute(QS["snapshot_counts"]).fetchone()
        assert counts_row is not None
        last_id, version, now = counts_row[len(KINDS) :]
        yield header(
            engine="postgres",
            created_at=float(now),
            schema_version=int(version),
            last_id=int(last_id),
            counts=dict(zip(KINDS, counts_row, strict=False)),
        )
        for kind in KINDS:
            with _cursor(conn, kind) as cursor:
                cursor.execute(QS[f"snapshot_{kind}"])
                for values in cursor:
                    yield record(kind, values)


def _cursor(conn: Connection, kind: str) -> psycopg.Cursor[Any] | psycopg.ServerCursor[Any]:
    """Jobs come through a server-side cursor, a batch at a time; the small tables at once."""
    if kind != "job":
        return conn.cursor()
    cursor = conn.cursor(name="conveyor_snapshot_jobs")
    cursor.itersize = _FETCH
    return cursor


def import_records(conn: Connection, records: Iterable[Record], now: float, where: str) -> Summary:
    """Write the snapshot ``records`` in one transaction on ``conn``."""
    with conn.transaction():
        conn.execute(QS["restore_lock"])
        check = conn.execute(QS["restore_has_data"]).fetchone()
        assert check is not None
        if check[0]:
            raise TargetNotEmpty(
                f"{where} already holds jobs or queue settings: restore into an empty schema "
                "(set postgres_schema, or a new database)"
            )
        intake = Intake(records, now)
        with conn.cursor() as cursor:
            for kind, batch in intake.batches():
                if kind == "job":
                    with cursor.copy(QS["restore_job"]) as copy:
                        for values in batch:
                            copy.write_row(_job_row(values))
                elif kind == "edge":
                    with cursor.copy(QS["restore_edge"]) as copy:
                        for values in batch:
                            copy.write_row(row(kind, values))
                else:
                    cursor.executemany(QS[f"restore_{kind}"], [row(kind, v) for v in batch])
            if intake.last_id:
                cursor.execute(QS["restore_advance_ids"], {"last_id": intake.last_id})
        return intake.finish()


def _job_row(values: Record) -> list[Any]:
    fields = list(row("job", values))
    for i in _JOB_TIMES:
        fields[i] = _timestamp(fields[i])
    return fields


def _timestamp(seconds: float | None) -> datetime | str | None:
    if seconds is None:
        return None
    if math.isinf(seconds):
        return "infinity" if seconds > 0 else "-infinity"
    return datetime.fromtimestamp(seconds, UTC)
