"""Versioned migrations of the PostgreSQL engine and the check that the live schema is what
they build.

Migrations are ``migrations/NNNN_name.sql`` scripts applied in order, each in the same
transaction as its row in ``conveyor_migrations``, all under an advisory lock so that workers
starting together do not race. ``verify`` builds the expected schema by applying every migration
to a scratch schema inside a transaction that is rolled back, and compares the catalogs.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from conveyor.backends.base import SchemaStatus
from conveyor.backends.postgres.connection import Connection, Cursor, Database, Q, composed
from conveyor.backends.sql import load_migrations
from conveyor.errors import SchemaError

MIGRATIONS = load_migrations("conveyor.backends.postgres")
LATEST_VERSION = MIGRATIONS[-1][0]

SchemaObjects = dict[tuple[str, str], str]


class Migrator:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._expected: SchemaObjects | None = None

    def too_new(self, current: int) -> SchemaError:
        return SchemaError(
            f"{self._db.target} was written by a newer Conveyor (schema version {current}, this "
            f"one knows up to {LATEST_VERSION}): upgrade Conveyor to use it"
        )

    def current_version(self, cur: Cursor) -> int:
        row = cur.execute(Q["has_migrations_table"], prepare=False).fetchone()
        if row is None or not row[0]:
            return 0
        row = cur.execute(Q["schema_version"], prepare=False).fetchone()
        return 0 if row is None else int(row[0])

    def ensure(self, auto_migrate: bool, connected: Callable[[], None] | None = None) -> None:
        """At start-up: migrate (or refuse) on a connection of its own, which also surfaces
        connection problems at once with the server's own reason. ``connected`` is called
        once that connection is made."""
        with self._db.connect() as conn, self._db.translated():
            if connected is not None:
                connected()
            current = self.current_version(conn.cursor())
            if current > LATEST_VERSION:
                raise self.too_new(current)
            if current == LATEST_VERSION:
                return
            if not auto_migrate:
                raise SchemaError(
                    f"{self._db.target} has schema version {current}, this Conveyor needs "
                    f"{LATEST_VERSION}: run `conveyor schema migrate`"
                )
            self._migrate(conn)

    def migrate(self) -> list[int]:
        with self._db.connect() as conn, self._db.translated():
            return self._migrate(conn)

    def _migrate(self, conn: Connection) -> list[int]:
        applied: list[int] = []
        with conn.transaction():
            cur = conn.cursor()
            cur.execute(Q["migration_lock"], {"schema": self._db.schema}, prepare=False)
            cur.execute(composed("create_schema", schema=self._db.schema), prepare=False)
            cur.execute(Q["create_migrations_table"], prepare=False)
            current = self.current_version(cur)
            if current > LATEST_VERSION:
                raise self.too_new(current)
            for version, name, script in MIGRATIONS[current:]:
                cur.execute(script, prepare=False)
                cur.execute(
                    Q["record_migration"], {"version": version, "name": name}, prepare=False
                )
                applied.append(version)
        return applied

    def verify(self) -> SchemaStatus:
        with self._db.connect() as conn, self._db.translated():
            current = self.current_version(conn.cursor())
            with conn.transaction(force_rollback=True):
                cur = conn.cursor()
                if self._expected is None:
                    self._expected = self._build_expected(cur)
                actual = _objects(cur, self._db.schema)
        expected = self._expected
        problems: list[str] = []
        for key, definition in sorted(expected.items()):
            if key not in actual:
                problems.append(f"missing {key[0]} {key[1]}")
            elif actual[key] != definition:
                problems.append(
                    f"{key[0]} {key[1]} differs from the migrations: {actual[key]!r}, "
                    f"expected {definition!r}"
                )
        problems.extend(f"unexpected {t} {n}" for t, n in sorted(set(actual) - set(expected)))
        if current > LATEST_VERSION:
            problems.append(str(self.too_new(current)))
        return SchemaStatus(current=current, latest=LATEST_VERSION, problems=problems)

    @staticmethod
    def _build_expected(cur: Cursor) -> SchemaObjects:
        """Every migration applied to an empty scratch schema; the caller rolls it back."""
        scratch = f"conveyor_verify_{secrets.token_hex(6)}"
        cur.execute(composed("create_schema", schema=scratch), prepare=False)
        cur.execute(Q["local_search_path"], {"schema": scratch}, prepare=False)
        for _, _, script in MIGRATIONS:
            cur.execute(script, prepare=False)
        return _objects(cur, scratch)


def _objects(cur: Cursor, schema: str) -> SchemaObjects:
    rows = cur.execute(Q["schema_objects"], {"schema": schema}, prepare=False).fetchall()
    return {(str(kind), str(name)): " ".join(str(text).split()) for kind, name, text in rows}
