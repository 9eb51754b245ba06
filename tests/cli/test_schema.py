"""`conveyor schema migrate|verify`."""

from __future__ import annotations

import json
import sqlite3
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
