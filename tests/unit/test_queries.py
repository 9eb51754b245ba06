"""The named-query loader, the migration loader, and that the SQLite engine only names queries
that exist and that every one of them compiles against the schema."""

from __future__ import annotations

import re
import sqlite3
from importlib import resources
from typing import Any

import pytest

from conveyor.backends.base import OutcomeKind
from conveyor.backends.sql import load_migrations, load_queries, parse_queries
from conveyor.backends.sqlite.backend import MIGRATIONS, split_statements
from conveyor.settings import SYNCHRONOUS_MODES

SQLITE = "conveyor.backends.sqlite"


def test_parse_queries_splits_on_headers() -> None:
    text = """-- A preamble comment that belongs to no query.

-- name: first
SELECT 1;

-- name: second_query
SELECT *
FROM t
WHERE a = :a

--   name:   third_3
-- a comment inside the body stays
UPDATE t SET a = 1;
"""
    queries = parse_queries(text)
    assert list(queries) == ["first", "second_query", "third_3"]
    assert queries["first"] == "SELECT 1"
    assert queries["second_query"] == "SELECT *\nFROM t\nWHERE a = :a"
    assert queries["third_3"] == "-- a comment inside the body stays\nUPDATE t SET a = 1"


def test_parse_queries_of_nothing() -> None:
    assert parse_queries("") == {}
    assert parse_queries("-- just a comment\n") == {}


def test_a_query_defined_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="'dup' is defined twice"):
        parse_queries("-- name: dup\nSELECT 1\n-- name: dup\nSELECT 2\n")


def test_headers_must_be_whole_lines() -> None:
    # "-- name:" inside a line is not a header, and names are lower-case identifiers.
    queries = parse_queries("-- name: a\nSELECT '-- name: b'\n-- name: Bad\nSELECT 2\n")
    assert list(queries) == ["a"]
    assert "-- name: Bad" in queries["a"]


def test_load_queries_reads_the_package_file() -> None:
    queries = load_queries(SQLITE)
    assert "claim_any" in queries
    assert all(body for body in queries.values()), "no query is empty"
    assert load_queries(SQLITE) is queries, "loaded once"


def engine_sources() -> str:
    folder = resources.files(SQLITE)
    return "\n".join(
        folder.joinpath(name).read_text(encoding="utf-8")
        for name in ("backend.py", "connection.py")
    )


def used_query_names() -> set[str]:
    source = engine_sources()
    names = set(re.findall(r"""Q\[\s*["']([a-z0-9_]+)["']\s*\]""", source))
    # Names built at run time.
    if 'Q[f"finish_{' in source:
        names |= {f"finish_{kind.value}" for kind in OutcomeKind}
    if 'f"pragma_synchronous_{' in source:
        names |= {f"pragma_synchronous_{mode.lower()}" for mode in SYNCHRONOUS_MODES}
    if re.search(r"""["']find_idempotent_any["']""", source):
        names |= {"find_idempotent_any", "find_idempotent_live"}
    return names


def test_every_query_the_engine_uses_exists() -> None:
    used = used_query_names()
    assert len(used) > 20, "the scan found the engine's queries"
    missing = sorted(used - set(load_queries(SQLITE)))
    assert missing == [], f"the SQLite engine uses queries that queries.sql lacks: {missing}"


def test_every_outcome_kind_has_a_finish_query() -> None:
    queries = load_queries(SQLITE)
    assert {f"finish_{kind.value}" for kind in OutcomeKind} <= set(queries)


def test_every_query_compiles_against_the_schema() -> None:
    db = sqlite3.connect(":memory:")
    try:
        for _, _, script in MIGRATIONS:
            for statement in split_statements(script):
                db.execute(statement)
        queries = load_queries(SQLITE)
        db.execute(queries["create_migrations_table"])
        for name, sql in queries.items():
            if name in {"begin_immediate", "begin_deferred", "commit", "rollback"}:
                continue
            if name == "insert_jobs_head":  # a fragment: compiled with two rows
                sql = f"{sql} {', '.join(['(' + ', '.join(['?'] * 10) + ')'] * 2)}"
            if sql.upper().startswith(("PRAGMA", "CREATE")):
                continue
            try:
                params: Any = (
                    [None] * sql.count("?")
                    if "?" in sql
                    else {p: None for p in re.findall(r":(\w+)", sql)}
                )
                db.execute(f"EXPLAIN {sql}", params)
            except sqlite3.Error as exc:  # pragma: no cover - the assertion message shows it
                pytest.fail(f"query {name} does not compile: {exc}")
    finally:
        db.close()


def test_migrations_are_numbered_from_one() -> None:
    migrations = load_migrations(SQLITE)
    assert [v for v, _, _ in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0][1] == "initial"


def test_split_statements() -> None:
    script = """
-- comment
CREATE TABLE a (x TEXT DEFAULT ';');  -- trailing comment
CREATE INDEX b ON a (x);
-- final comment
"""
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[0].startswith("-- comment\nCREATE TABLE a")
    assert statements[1].startswith("CREATE INDEX b")


def test_split_statements_refuses_an_unterminated_statement() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        split_statements("CREATE TABLE a (x INT);\nCREATE TABLE b (y INT)")
