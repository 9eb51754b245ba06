"""`conveyor schema sql` on PostgreSQL: the printed script, applied with psql to an empty
database, builds exactly the schema `conveyor schema migrate` builds, and verify accepts it."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import sql
from psycopg.conninfo import make_conninfo

from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.schema import LATEST_VERSION, MIGRATIONS
from conveyor.backends.script import render
from conveyor.backends.sql import parse_queries
from conveyor.cli import cli
from conveyor.settings import Settings
from tests.postgres.factory import admin_query, session_database

T = parse_queries((Path(__file__).parent / "schema.sql").read_text(encoding="utf-8"))


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A database of its own, empty: the script must create everything it needs."""
    server = session_database().server_url
    name = f"conveyor_test_{os.getpid()}_script_{secrets.token_hex(3)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(admin_query("create_database", database=name))
    try:
        yield make_conninfo(server, dbname=name)
    finally:
        with suppress(psycopg.Error), psycopg.connect(server, autocommit=True) as admin:
            admin.execute(admin_query("drop_database", database=name))


def _conveyor(url: str, *args: str, schema: str | None = None) -> Result:
    """``conveyor --url URL schema ARGS``, naming the schema through its environment twin."""
    env = {"CONVEYOR_POSTGRES_SCHEMA": schema} if schema else {}
    return CliRunner().invoke(cli, ["--url", url, "schema", *args], env=env, catch_exceptions=False)


def _psql(url: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _dump(url: str, schema: str) -> str:
    """pg_dump's DDL of one schema, with the schema's name taken out."""
    out = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "-n", schema, "-d", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    # \restrict lines carry a random key (pg_dump's defence against malicious dumps).
    lines = [
        line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    ]
    return re.sub(rf"\b{schema}\b", "SCHEMA", "\n".join(lines))


def _migrations(url: str, schema: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        query = sql.SQL(T["migrations_of"]).format(schema=sql.Identifier(schema))
        rows = conn.execute(query).fetchall()
    return [(int(v), str(n)) for v, n in rows]


def _migrate(url: str, schema: str) -> None:
    PostgresBackend(Settings.load(env={}, url=url, postgres_schema=schema)).close()


def test_the_printed_script_builds_what_migrate_builds(empty_database: str) -> None:
    url = empty_database
    # The URL only picks the engine: the script is printed from a server that does not exist.
    printed = _conveyor("postgresql://nobody@127.0.0.1:1/nowhere", "sql", "--schema", "by_script")
    assert printed.exit_code == 0, printed.output
    applied = _psql(url, printed.stdout)
    assert applied.returncode == 0, applied.stderr

    _migrate(url, "by_migrate")
    assert _dump(url, "by_script") == _dump(url, "by_migrate")
    expected = [(version, name) for version, name, _ in MIGRATIONS]
    assert _migrations(url, "by_script") == _migrations(url, "by_migrate") == expected

    verified = _conveyor(url, "verify", "--json", schema="by_script")
    assert verified.exit_code == 0, verified.output
    assert '"ok": true' in verified.stdout
    # And Conveyor uses it as it is: nothing left to migrate.
    backend = PostgresBackend(
        Settings.load(env={}, url=url, postgres_schema="by_script", auto_migrate=False)
    )
    try:
        assert backend.migrate() == []
    finally:
        backend.close()


def test_from_prints_only_later_migrations_and_upgrades_an_older_schema(
    empty_database: str,
) -> None:
    url = empty_database
    # A schema at version 1, made by the same renderer from the first migration alone.
    first = render("postgres", MIGRATIONS[:1], "upgraded", 0)
    assert _psql(url, first).returncode == 0

    printed = _conveyor(url, "sql", "--from", "1", schema="upgraded")
    assert printed.exit_code == 0, printed.output
    assert "-- Migration 1:" not in printed.stdout
    assert f"-- Migration {LATEST_VERSION}:" in printed.stdout
    applied = _psql(url, printed.stdout)
    assert applied.returncode == 0, applied.stderr

    _migrate(url, "by_migrate")
    assert _dump(url, "upgraded") == _dump(url, "by_migrate")
    assert [v for v, _ in _migrations(url, "upgraded")] == list(range(1, LATEST_VERSION + 1))


def test_a_schema_at_another_version_is_refused_before_any_change(empty_database: str) -> None:
    url = empty_database
    _migrate(url, "current")
    before = _dump(url, "current")
    for from_version in (0, LATEST_VERSION - 1):
        script = _conveyor(url, "sql", "--schema", "current", "--from", str(from_version)).stdout
        refused = _psql(url, script)
        assert refused.returncode != 0
        assert f'schema "current" is at version {LATEST_VERSION}' in refused.stderr
        assert f"conveyor schema sql --from {LATEST_VERSION}" in refused.stderr
    assert _dump(url, "current") == before
    # An empty database is at version 0: a script for an upgrade leaves it empty.
    refused = _psql(url, _conveyor(url, "sql", "--from", "1").stdout)
    assert 'schema "conveyor" is at version 0' in refused.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute(T["schema_exists"], {"schema": "conveyor"}).fetchone() == (False,)
