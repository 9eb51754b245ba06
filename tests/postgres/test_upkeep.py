"""Maintenance vacuums the jobs table itself where autovacuum does not look after it."""

from __future__ import annotations

from pathlib import Path

from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.sql import parse_queries
from tests.postgres.conftest import Connection, inspect
from tests.postgres.factory import postgres_backend
from tests.worker.harness import wait_for

U = parse_queries((Path(__file__).parent / "upkeep.sql").read_text(encoding="utf-8"))


def vacuums(conn: Connection) -> int:
    conn.execute(U["clear_stats_snapshot"])
    row = conn.execute(U["vacuum_count"]).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_a_table_autovacuum_skips_is_vacuumed_by_upkeep(pg_real_time: PostgresBackend) -> None:
    with inspect(pg_real_time) as conn:
        conn.execute(U["table_autovacuum_off"])
        before = vacuums(conn)
        assert pg_real_time.upkeep() is True
        wait_for(lambda: vacuums(conn) > before, "the vacuum to show in the table's statistics")


def test_upkeep_leaves_the_table_alone_when_told_to() -> None:
    with postgres_backend(None, None, {"postgres_self_vacuum": False}) as backend:
        with inspect(backend) as conn:
            conn.execute(U["table_autovacuum_off"])
        assert backend.upkeep() is False
