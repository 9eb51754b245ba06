"""The PostgreSQL backend factory of the test suite.

A database is created once per test session (per process) on the server named by
CONVEYOR_TEST_POSTGRES_URL and dropped when that process exits; every backend gets a fresh schema
of its own in it, dropped again afterwards. An unreachable server fails the tests loudly: the
PostgreSQL engine is not optional in this suite.
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


@contextmanager
def postgres_backend(
    tmp_path: Path | None, clock: Callable[[], float] | None, overrides: dict[str, Any]
) -> Iterator[PostgresBackend]:
    """A fresh, empty PostgresBackend in a schema of its own, driven by ``clock`` (None: the
    database's own clock, as in production)."""
    database = session_database()
    overrides = dict(overrides)
    schema = overrides.pop("postgres_schema", None) or new_schema()
    settings = Settings.load(env={}, url=database.url, postgres_schema=schema, **overrides)
    backend = PostgresBackend(settings, clock=clock)
    try:
        yield backend
    finally:
        backend.close()
        database.drop_schema(schema)
