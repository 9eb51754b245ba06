"""Backup and restore on SQLite (see conveyor/snapshot/): the export is one read transaction,
which in WAL mode sees one moment of the file while workers go on writing; the import is one
write transaction, which no other writer shares, so the target cannot fill up meanwhile."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator

from conveyor.backends.sql import load_queries
from conveyor.errors import TargetNotEmpty
from conveyor.snapshot.records import KINDS, Intake, Record, Summary, header, record, row

#: The queries of snapshots.
QS = load_queries("conveyor.backends.sqlite", "snapshot.sql")
#: Rows fetched from SQLite at a time while exporting.
_FETCH = 1000


def export_records(db: sqlite3.Connection, now: float) -> Iterator[Record]:
    """The records of the file ``db`` is open on, inside a read transaction it holds."""
    counts_row = db.execute(QS["snapshot_counts"]).fetchone()
    counts = dict(zip(KINDS, counts_row, strict=False))
    last_id, version = counts_row[len(KINDS)], counts_row[len(KINDS) + 1]
    yield header(
        engine="sqlite",
        created_at=now,
        schema_version=int(version),
        last_id=int(last_id),
        counts=counts,
    )
    for kind in KINDS:
        cursor = db.execute(QS[f"snapshot_{kind}"])
        while rows := cursor.fetchmany(_FETCH):
            for values in rows:
                yield record(kind, values)


def import_records(
    db: sqlite3.Connection, records: Iterable[Record], now: float, where: str
) -> Summary:
    """Write the snapshot ``records`` inside the write transaction ``db`` holds."""
    if db.execute(QS["restore_has_data"]).fetchone()[0]:
        raise TargetNotEmpty(
            f"{where} already holds jobs or queue settings: restore into an empty database "
            "(a new file)"
        )
    intake = Intake(records, now)
    for kind, batch in intake.batches():
        db.executemany(QS[f"restore_{kind}"], [row(kind, values) for values in batch])
    params = {"last_id": intake.last_id}
    if intake.last_id and not db.execute(QS["restore_advance_ids"], params).rowcount:
        db.execute(QS["restore_start_ids"], params)
    return intake.finish()
