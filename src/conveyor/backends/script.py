"""The schema as one SQL script (`conveyor schema sql`), for DBAs who review and apply DDL
themselves: every migration after a given version, in order, with the bookkeeping
`conveyor schema migrate` does around them (the migrations table, one row per migration, the
migration lock on PostgreSQL). Made from the URL and the migration files alone: no connection,
no database driver.
"""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.backends import engine_of
from conveyor.backends.sql import load_migrations, load_queries
from conveyor.errors import ConfigurationError
from conveyor.settings import Settings

Migration = tuple[int, str, str]


def schema_script(settings: Settings, from_version: int = 0) -> str:
    """The DDL that takes the schema ``settings`` names from ``from_version`` (0: nothing
    there yet) to the latest version."""
    engine = engine_of(settings.url)
    if engine == "redis":
        raise ConfigurationError(
            "Redis has no schema to review: its keys need no DDL, and `conveyor schema "
            "migrate` records the key layout version"
        )
    migrations = load_migrations(_package(engine))
    latest = migrations[-1][0]
    if not 0 <= from_version <= latest:
        raise ConfigurationError(
            f"no schema version {from_version}: this Conveyor knows versions 0 to {latest}"
        )
    return render(engine, migrations, settings.postgres_schema, from_version)


def render(engine: str, migrations: Sequence[Migration], schema: str, from_version: int) -> str:
    """The script applying ``migrations`` after ``from_version`` to ``schema`` (PostgreSQL's;
    ignored on SQLite). The migrations table is created as the engine's queries.sql does."""
    templates = load_queries(_package(engine), "script.sql")
    create_table = load_queries(_package(engine))["create_migrations_table"]
    pending = [m for m in migrations if m[0] > from_version]
    if len(pending) == 1:
        what = f"migration {pending[0][0]}"
    elif pending:
        what = f"migrations {pending[0][0]} to {pending[-1][0]}"
    else:
        what = f"nothing after version {from_version}"
    parts = [
        templates["head"].format(
            schema=schema,
            what=what,
            from_version=from_version,
            create_migrations_table=create_table,
        )
    ]
    for version, name, script in pending:
        # format() inserts the migration's text as it is (braces in it are not placeholders).
        script = script.strip().rstrip(";") + ";"
        parts.append(templates["migration"].format(version=version, name=name, script=script))
    parts.append(templates["tail"])
    return "".join(part + ";\n\n" for part in parts).rstrip() + "\n"


def _package(engine: str) -> str:
    return f"conveyor.backends.{engine}"
