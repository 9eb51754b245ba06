"""The PostgreSQL backend factory of the test suite.

A database is created once per test session (per process) on the server named by
CONVEYOR_TEST_POSTGRES_URL and dropped when that process exits; every backend gets an empty,
migrated schema of its own in it. An unreachable server fails the tests loudly: the PostgreSQL
engine is not optional in this suite.

Migrating a schema and dropping it again cost most of a contract test's time on this engine, so
the schemas are recycled (``migrated_schema``): when a test is done with one, its tables are
emptied (and its job ids start at 1 again) and it waits for the next test -- but only if the test
left its structure exactly as the migrations built it (``schema_fingerprint`` in admin.sql);
otherwise, or if anything goes wrong, it is dropped as before and the next test gets a new one.
"""

from __future__ import annotations

import atexit
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.sql import parse_queries
from conveyor.settings import Settings

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN = parse_queries((Path(__file__).parent / "admin.sql").read_text(encoding="utf-8"))


def admin_query(name: str, **identifiers: str) -> sql.Composed:
    return sql.SQL(ADMIN[name]).format(**{k: sql.Identifier(v) for k, v in identifiers.items()})


class SessionDatabase:
    """This process's test database. Created on first use; dropped at exit by its creator."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.name = f"conveyor_test_{os.getpid()}_{secrets.token_hex(3)}"
        self.creator = os.getpid()
        try:
            with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as admin:
                admin.execute(admin_query("create_database", database=self.name))
        except psycopg.Error as exc:
            where = {k: v for k, v in conninfo_to_dict(server_url).items() if k != "password"}
            raise RuntimeError(
                f"the PostgreSQL test server is unreachable ({where}): {exc}; start it or point "
                "CONVEYOR_TEST_POSTGRES_URL at one"
            ) from exc
        #: A libpq connection string (the keyword form, which open_backend also accepts).
        self.url = make_conninfo(server_url, dbname=self.name)
        atexit.register(self.drop)

    def drop(self) -> None:
        if os.getpid() != self.creator:  # a forked child inherited the atexit hook
            return
        with (
            suppress(psycopg.Error),
            psycopg.connect(self.server_url, autocommit=True, connect_timeout=5) as admin,
        ):
            admin.execute(admin_query("drop_database", database=self.name))

    def drop_schema(self, schema: str) -> None:
        """Best effort: whatever stays behind goes with the database at exit."""
        with suppress(psycopg.Error), psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(ADMIN["short_lock_timeout"])
            conn.execute(admin_query("drop_schema", schema=schema))


_database: SessionDatabase | None = None
_lock = threading.Lock()


def session_database() -> SessionDatabase:
    global _database
    with _lock:
        if _database is None:
            _database = SessionDatabase(
                os.environ.get("CONVEYOR_TEST_POSTGRES_URL") or DEFAULT_SERVER
            )
        return _database


def new_schema() -> str:
    return f"conveyor_test_{secrets.token_hex(6)}"


#: A schema whose tables and indexes take more than this is dropped rather than emptied.
RECYCLED_BYTES = 16 << 20


#: Rows the migrations write (e.g. the aggregates' watermarks), by table: an emptied schema gets
#: them back, as a freshly migrated one has them.
Seeds = dict[str, list[tuple[Any, ...]]]


class SchemaPool:
    """Migrated schemas of this process's test database that no test is using, each with the
    fingerprint of its structure and the rows its migrations wrote, just after migration."""

    def __init__(self) -> None:
        self._idle: list[tuple[str, str]] = []
        self._fingerprints: dict[str, str] = {}
        self._seeds: Seeds = {}
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            if self._idle:
                schema, fingerprint = self._idle.pop()
                self._fingerprints[schema] = fingerprint
                return schema
        database = session_database()
        schema = new_schema()
        settings = Settings.load(env={}, url=database.url, postgres_schema=schema)
        PostgresBackend(settings, auto_migrate=True).close()
        with psycopg.connect(database.url, autocommit=True) as conn:
            fingerprint = _fingerprint(conn, schema)
            seeds = _seeds(conn, schema)
        with self._lock:
            self._fingerprints[schema] = fingerprint
            self._seeds = seeds
        return schema

    def give_back(self, schema: str) -> None:
        """Empty ``schema`` and keep it for the next test if its structure is unchanged and it
        is small; drop it otherwise (or if anything goes wrong)."""
        with self._lock:
            fingerprint = self._fingerprints.pop(schema)
        database = session_database()
        try:
            with psycopg.connect(database.url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(ADMIN["pool_lock_timeout"])
                with conn.transaction():
                    fit = _fit_for_reuse(conn, schema, fingerprint)
                    if fit:
                        _empty(conn, schema, self._seeds)
        except psycopg.Error:
            fit = False
        if not fit:
            database.drop_schema(schema)
            return
        with self._lock:
            self._idle.append((schema, fingerprint))


def _fit_for_reuse(conn: psycopg.Connection[Any], schema: str, fingerprint: str) -> bool:
    """Whether the test left ``schema`` as it was migrated, but for rows, and not many of those
    (deleting many rows costs more than dropping, and leaves pages for the next test to scan)."""
    if _fingerprint(conn, schema) != fingerprint:
        return False
    row = conn.execute(ADMIN["schema_bytes"], {"schema": schema}).fetchone()
    return row is not None and int(row[0]) <= RECYCLED_BYTES


def _empty(conn: psycopg.Connection[Any], schema: str, seeds: Seeds) -> None:
    for [table] in conn.execute(ADMIN["tables_of"], {"schema": schema}).fetchall():
        conn.execute(sql.SQL(ADMIN["empty_table"]).format(table=sql.Identifier(schema, str(table))))
    for table, rows in seeds.items():
        with conn.cursor().copy(
            sql.SQL(ADMIN["refill_table"]).format(table=sql.Identifier(schema, table))
        ) as copy:
            for row in rows:
                copy.write_row(row)
    conn.execute(ADMIN["restart_sequences"], {"schema": schema})


def _seeds(conn: psycopg.Connection[Any], schema: str) -> Seeds:
    seeds: Seeds = {}
    for [table] in conn.execute(ADMIN["tables_of"], {"schema": schema}).fetchall():
        query = sql.SQL(ADMIN["table_rows"]).format(table=sql.Identifier(schema, str(table)))
        rows = conn.execute(query).fetchall()
        if rows:
            seeds[str(table)] = rows
    return seeds


def _fingerprint(conn: psycopg.Connection[Any], schema: str) -> str:
    """The structure of ``schema`` and the migrations recorded in it, as one string."""
    [structure] = conn.execute(ADMIN["schema_fingerprint"], {"schema": schema}).fetchone() or [""]
    [applied] = conn.execute(admin_query("migrations_applied", schema=schema)).fetchone() or [""]
    return f"{structure} {applied}"


_schemas = SchemaPool()


@contextmanager
def migrated_schema() -> Iterator[str]:
    """An empty schema, migrated to the latest version, in this session's test database; the
    caller must have closed every connection into it when the block ends."""
    schema = _schemas.take()
    try:
        yield schema
    finally:
        _schemas.give_back(schema)


@contextmanager
def postgres_backend(
    tmp_path: Path | None, clock: Callable[[], float] | None, overrides: dict[str, Any]
) -> Iterator[PostgresBackend]:
    """A fresh, empty PostgresBackend in a schema of its own, driven by ``clock`` (None: the
    database's own clock, as in production). With ``postgres_schema`` in ``overrides``: in
    that schema, migrated on opening unless told otherwise, and dropped afterwards."""
    database = session_database()
    overrides = dict(overrides)
    schema = overrides.pop("postgres_schema", None)
    if schema is None:
        with migrated_schema() as schema:
            settings = Settings.load(env={}, url=database.url, postgres_schema=schema, **overrides)
            backend = PostgresBackend(settings, clock=clock)
            try:
                yield backend
            finally:
                backend.close()
        return
    settings = Settings.load(env={}, url=database.url, postgres_schema=schema, **overrides)
    backend = PostgresBackend(settings, clock=clock)
    try:
        yield backend
    finally:
        backend.close()
        database.drop_schema(schema)
