"""`conveyor schema migrate|verify|sql`."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.cli.support import Invoke, assert_user_error, output_json


def test_migrate_creates_the_database_and_verify_passes(invoke: Invoke, url: str) -> None:
    result = invoke("schema", "migrate")
    assert result.exit_code == 0, result.output
    assert "schema version" in result.stdout
    assert Path(url.removeprefix("sqlite:///")).exists()

    again = output_json(invoke("schema", "migrate", "--json"))
    assert again["applied"] == []
    assert again["version"] == again["latest"] >= 1

    verified = invoke("schema", "verify")
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith("schema OK")
    assert output_json(invoke("schema", "verify", "--json"))["ok"] is True


def test_verify_lists_what_differs_and_exits_1(invoke: Invoke, url: str, migrated: None) -> None:
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    index = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'conveyor%' LIMIT 1"
    ).fetchone()[0]
    db.execute(f"DROP INDEX {index}")
    db.close()

    result = invoke("schema", "verify")
    assert result.exit_code == 1
    assert f"problem: missing index {index}" in result.stdout
    assert "Traceback" not in result.output
    report = invoke("schema", "verify", "--json")
    assert report.exit_code == 1
    assert f"missing index {index}" in report.stdout


def test_a_schema_from_a_newer_conveyor(invoke: Invoke, url: str, migrated: None) -> None:
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    db.execute("INSERT INTO conveyor_migrations (version, name, applied_at) VALUES (999, 'x', 0)")
    db.commit()
    db.close()

    assert_user_error(invoke("stats"), "newer Conveyor")
    assert_user_error(invoke("enqueue", "t"), "newer Conveyor")
    verified = invoke("schema", "verify")
    assert verified.exit_code == 1
    assert "newer Conveyor" in verified.stdout


def test_verify_reports_an_outdated_schema_without_migrating_it(invoke: Invoke, url: str) -> None:
    path = Path(url.removeprefix("sqlite:///"))
    sqlite3.connect(path).close()  # an empty database: schema version 0

    for _ in range(2):  # looking did not upgrade it: the second look finds the same
        result = invoke("schema", "verify", "--json")
        assert result.exit_code == 1
        report = json.loads(result.stdout)
        assert report["version"] == 0 and report["latest"] >= 1
        assert "missing table conveyor_jobs" in report["problems"]


def test_without_auto_migrate_an_outdated_schema_is_refused_until_migrated(
    invoke: Invoke, url: str
) -> None:
    sqlite3.connect(url.removeprefix("sqlite:///")).close()
    off = {"CONVEYOR_AUTO_MIGRATE": "false"}

    assert_user_error(invoke("stats", env=off), "conveyor schema migrate")
    assert invoke("schema", "migrate", env=off).exit_code == 0
    assert invoke("stats", env=off).exit_code == 0


def test_a_bad_auto_migrate_value_is_a_user_error(invoke: Invoke) -> None:
    assert_user_error(invoke("stats", env={"CONVEYOR_AUTO_MIGRATE": "perhaps"}), "AUTO_MIGRATE")


# --- schema sql ---------------------------------------------------------------------------


def _sqlite3(path: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sqlite3", str(path)], input=script, capture_output=True, text=True, timeout=60
    )


def _catalog(path: Path) -> list[tuple[str, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        objects = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY 1, 2")
        migrations = db.execute("SELECT 'migration', version, name FROM conveyor_migrations")
        return [tuple(map(str, row)) for row in [*objects, *migrations]]


def test_sql_prints_a_script_that_builds_what_migrate_builds(
    invoke: Invoke, tmp_path: Path
) -> None:
    nowhere = tmp_path / "absent" / "jobs.db"
    printed = invoke("schema", "sql", url=f"sqlite:///{nowhere}")
    assert printed.exit_code == 0, printed.output
    assert not nowhere.parent.exists()  # printing opened nothing

    by_script = tmp_path / "script.db"
    applied = _sqlite3(by_script, printed.stdout)
    assert applied.returncode == 0, applied.stderr
    by_migrate = tmp_path / "migrate.db"
    assert invoke("schema", "migrate", url=f"sqlite:///{by_migrate}").exit_code == 0

    assert _catalog(by_script) == _catalog(by_migrate)
    verified = invoke("schema", "verify", url=f"sqlite:///{by_script}")
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith("schema OK")


def test_sql_from_a_version_checks_the_version_before_any_change(
    invoke: Invoke, url: str, migrated: None, tmp_path: Path
) -> None:
    latest = output_json(invoke("schema", "verify", "--json"))["latest"]
    path = Path(url.removeprefix("sqlite:///"))
    before = _catalog(path)
    # Printed for the version the database is at: nothing to do, and it does nothing.
    assert _sqlite3(path, invoke("schema", "sql", "--from", str(latest)).stdout).returncode == 0
    assert _catalog(path) == before
    # Printed for an older version: refused, naming the way out.
    refused = _sqlite3(path, invoke("schema", "sql", "--from", str(latest - 1)).stdout)
    assert refused.returncode != 0
    assert f"must be at schema version {latest - 1}" in refused.stderr
    assert "conveyor schema sql --from" in refused.stderr
    assert _catalog(path) == before
    # An empty database is at version 0: an upgrade script leaves it empty.
    empty = tmp_path / "empty.db"
    assert _sqlite3(empty, invoke("schema", "sql", "--from", str(latest)).stdout).returncode != 0
    with contextlib.closing(sqlite3.connect(empty)) as db:
        assert db.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_sql_mistakes_are_user_errors(invoke: Invoke) -> None:
    assert_user_error(invoke("schema", "sql", "--from", "999"), "no schema version 999")
    assert_user_error(
        invoke("schema", "sql", "--schema", "Bad-Name", url="postgresql://x/y"), "postgres_schema"
    )
    assert_user_error(invoke("schema", "sql", url="mysql://x/y"), "unsupported database URL")


def test_sql_needs_no_server_and_no_driver() -> None:
    """Printed for PostgreSQL with psycopg unimportable and a server that does not exist."""
    program = (
        "import sys; sys.modules['psycopg'] = sys.modules['psycopg_pool'] = None; "
        "from conveyor.cli import main; main()"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_POSTGRES_SCHEMA"] = "jobs_a"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            program,
            "--url",
            "postgresql://x@127.0.0.1:1/none",
            "schema",
            "sql",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert 'CREATE SCHEMA IF NOT EXISTS "jobs_a";' in result.stdout
    assert "CREATE TABLE conveyor_jobs" in result.stdout
