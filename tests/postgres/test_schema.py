"""Migrations and schema verification of the PostgreSQL engine."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.connection import Q
from conveyor.backends.postgres.schema import LATEST_VERSION
from conveyor.backends.sql import parse_queries
from conveyor.errors import SchemaError
from conveyor.settings import Settings
from tests.postgres.conftest import inspect
from tests.postgres.factory import new_schema, session_database
from tests.support import FakeClock

T = parse_queries((Path(__file__).parent / "schema.sql").read_text(encoding="utf-8"))


def test_a_fresh_install_is_exactly_what_the_migrations_make(pg: PostgresBackend) -> None:
    status = pg.verify_schema()
    assert status.ok, status.problems
    assert status.current == status.latest == LATEST_VERSION


def test_tables_live_in_the_configured_schema_only(pg: PostgresBackend) -> None:
    with inspect(pg) as conn:
        rows = conn.execute(T["tables_named_conveyor"]).fetchall()
    assert {(str(schema), str(table)) for schema, table in rows} >= {
        (pg.settings.postgres_schema, "conveyor_jobs"),
        (pg.settings.postgres_schema, "conveyor_migrations"),
    }
    assert {schema for schema, _ in rows} == {pg.settings.postgres_schema}


def test_verify_names_what_drifted(pg: PostgresBackend) -> None:
    with inspect(pg) as conn:
        conn.execute(T["drift"])
    problems = pg.verify_schema().problems
    assert "missing index conveyor_jobs_ready" in problems
    assert any(p.startswith("column conveyor_jobs.priority differs") for p in problems)
    assert "unexpected index conveyor_jobs_extra" in problems
    assert "unexpected column conveyor_jobs.extra" in problems
    assert not pg.verify_schema().ok


def test_migrate_again_applies_nothing(pg: PostgresBackend) -> None:
    assert pg.migrate() == []
    assert pg.verify_schema().ok


def test_a_newer_schema_is_refused_naming_the_database(pg: PostgresBackend) -> None:
    with inspect(pg) as conn:
        conn.execute(T["pretend_newer"], {"version": LATEST_VERSION + 1})
    database = str(session_database().name)
    with pytest.raises(SchemaError, match="newer Conveyor") as caught:
        PostgresBackend(pg.settings)
    assert database in str(caught.value)
    assert pg.settings.postgres_schema in str(caught.value)
    with pytest.raises(SchemaError, match=database):
        pg.migrate()
    status = pg.verify_schema()
    assert status.current == LATEST_VERSION + 1
    assert not status.ok


def test_without_auto_migrate_an_empty_schema_is_refused() -> None:
    settings = _settings(new_schema())
    with pytest.raises(SchemaError, match="conveyor schema migrate"):
        PostgresBackend(settings, auto_migrate=False)


def test_workers_starting_together_migrate_once() -> None:
    settings = _settings(new_schema())
    errors: list[BaseException] = []
    backends: list[PostgresBackend] = []
    start = threading.Barrier(6)

    def open_one() -> None:
        try:
            start.wait(10)
            backends.append(PostgresBackend(settings, clock=FakeClock()))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        assert len(backends) == 6
        with inspect(backends[0]) as conn:
            versions = [row[0] for row in conn.execute(T["migration_versions"])]
        assert versions == list(range(1, LATEST_VERSION + 1))
        assert backends[0].verify_schema().ok
    finally:
        for backend in backends:
            backend.close()
        session_database().drop_schema(settings.postgres_schema)


def test_every_named_query_parses_against_the_schema(pg: PostgresBackend) -> None:
    """Each query of queries.sql is sent to the server to be parsed and planned (not run)."""
    tail = "\n" + Q["skip_held_keys"] + "\n" + Q["new_jobs_notify"]
    parts = {"skip_held_keys", "new_jobs_notify", "insert_jobs_staged", "copy_enqueue_stage"}
    parts |= {"new_job", "new_job_notify"}
    with inspect(pg) as conn:
        for name, text in Q.items():
            if "-- composed" in text or name in parts:
                continue
            if name == "insert_jobs":
                text += tail
            if name == "insert_job":
                text += "\n" + Q["skip_held_keys"] + "\n" + Q["new_job_notify"]
                single = _number_placeholders(Q["insert_job"] + "\n" + Q["new_job"])
                result = conn.pgconn.prepare(b"check_insert_job_alone", single.encode())
                assert result.error_message == b"", result.error_message.decode()
            numbered = _number_placeholders(text)
            result = conn.pgconn.prepare(f"check_{name}".encode(), numbered.encode())
            assert result.error_message == b"", f"{name}: {result.error_message.decode()}"
        with conn.transaction(force_rollback=True):
            conn.execute(Q["create_enqueue_stage"])
            conn.execute(Q["insert_jobs_staged"] + tail, {"now": None, "channel": "x"})


def _number_placeholders(text: str) -> str:
    """psycopg's %(name)s / %(name)b as the server's $1, $2 ... (same name, same number)."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match[1], len(numbers) + 1)}"

    return re.sub(r"%\(([a-z_]+)\)[sb]", number, text)


def _settings(schema: str) -> Settings:
    return Settings.load(env={}, url=session_database().url, postgres_schema=schema)
