"""`conveyor backup`, `conveyor restore` and `conveyor copy`: moving a queue through a file or
straight into another database, and one line with exit 2 for every user mistake."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor, JobState
from tests.cli.support import Invoke, assert_user_error, output_json
from tests.postgres.factory import new_schema, session_database
from tests.redis_engine.factory import redis_database
from tests.support import new_job


@pytest.fixture
def filled(invoke: Invoke, url: str) -> str:
    """The test's database with three jobs (one running) and a paused queue."""
    with Conveyor(url) as app:
        app.enqueue_raw([new_job("t", "mail"), new_job("t", "mail"), new_job("t", "reports")])
        app.backend.claim("w", ["reports"], 1, 30.0)
        app.pause_queue("mail")
    return url


def test_backup_then_restore(invoke: Invoke, filled: str, tmp_path: Path) -> None:
    backup = tmp_path / "jobs.jsonl"
    result = invoke("backup", "--to", str(backup))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"backed up to {backup}: 1 queue setting, 3 jobs (1 running)\n"
    header = json.loads(backup.read_text().splitlines()[0])
    assert (header["kind"], header["format"], header["engine"]) == ("header", 1, "sqlite")
    assert header["counts"]["job"] == 3
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    result = invoke("restore", "--from", str(backup), url=target)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("restored a sqlite backup of ")
    assert result.stdout.endswith(": 1 queue setting, 3 jobs (1 running job restored as queued)\n")
    with Conveyor(target) as app:
        assert [job.state for job in app.list_jobs()] == [JobState.QUEUED] * 3
        assert [gate.queue for gate in app.queue_gates()] == ["mail"]


def test_gzip_and_json(invoke: Invoke, filled: str, tmp_path: Path) -> None:
    backup = tmp_path / "jobs.jsonl.gz"
    written = output_json(invoke("backup", "--to", str(backup), "--json"))
    assert written["counts"]["job"] == 3 and written["running"] == 1
    with gzip.open(backup, "rt") as lines:
        assert json.loads(lines.readline())["kind"] == "header"
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    restored = output_json(invoke("restore", "--from", str(backup), "--json", url=target))
    assert restored["counts"] == written["counts"]
    assert restored["restored"] is True


def test_copy_between_sqlite_files(invoke: Invoke, filled: str, tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    result = invoke("copy", "--from", filled, "--to", target)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"copied {filled} to {target}: 1 queue setting, 3 jobs (1 running job restored as queued)\n"
    )


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    database = session_database()
    schema = new_schema()
    yield database.url, schema
    database.drop_schema(schema)


def test_copy_to_postgresql(invoke: Invoke, filled: str, postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    env = {"CONVEYOR_POSTGRES_SCHEMA": schema}
    result = invoke("copy", "--from", filled, "--to", url, "--json", env=env)
    assert output_json(result)["counts"]["job"] == 3
    with Conveyor(url, postgres_schema=schema) as app:
        assert len(app.list_jobs()) == 3
    # A second copy finds the target full.
    result = invoke("copy", "--from", filled, "--to", url, env=env)
    assert_user_error(result, "already holds jobs")


def test_copy_to_redis(invoke: Invoke, filled: str) -> None:
    with redis_database() as (url, prefix):
        env = {"CONVEYOR_REDIS_PREFIX": prefix}
        result = invoke("copy", "--from", filled, "--to", url, "--json", env=env)
        summary = output_json(result)
        assert (summary["counts"]["job"], summary["running"]) == (3, 1)
        with Conveyor(url, redis_prefix=prefix) as app:
            assert {job.state for job in app.list_jobs()} == {JobState.QUEUED}
            assert app.queue_gates()[0].paused_until is not None
        # A second copy finds the target full.
        result = invoke("copy", "--from", filled, "--to", url, env=env)
        assert_user_error(result, "already holds jobs")


# --- mistakes: one line, exit 2, nothing written ------------------------------------------------


def test_restore_from_a_missing_file(invoke: Invoke, tmp_path: Path) -> None:
    target = tmp_path / "new.db"
    result = invoke("restore", "--from", str(tmp_path / "nope.jsonl"), url=f"sqlite:///{target}")
    assert_user_error(result, "no backup file at", "nope.jsonl")
    assert not target.exists()


def test_restore_into_a_database_with_jobs(invoke: Invoke, filled: str, tmp_path: Path) -> None:
    backup = tmp_path / "jobs.jsonl"
    assert invoke("backup", "--to", str(backup)).exit_code == 0
    assert_user_error(invoke("restore", "--from", str(backup)), "already holds jobs")


def test_restore_of_a_damaged_line_names_it(invoke: Invoke, filled: str, tmp_path: Path) -> None:
    backup = tmp_path / "jobs.jsonl"
    assert invoke("backup", "--to", str(backup)).exit_code == 0
    lines = backup.read_text().splitlines()
    target = tmp_path / "new.db"
    for number, damage in ((4, "{not json"), (3, '{"kind": "job", "id": 1}'), (2, "[]")):
        damaged = [*lines[: number - 1], damage, *lines[number:]]
        backup.write_text("\n".join(damaged) + "\n")
        result = invoke("restore", "--from", str(backup), url=f"sqlite:///{target}")
        assert_user_error(result, f"line {number}:", "nothing was restored")
        with Conveyor(f"sqlite:///{target}") as app:
            assert app.list_jobs() == [] and app.queue_gates() == []


def test_restore_of_a_cut_file(invoke: Invoke, filled: str, tmp_path: Path) -> None:
    backup = tmp_path / "jobs.jsonl"
    assert invoke("backup", "--to", str(backup)).exit_code == 0
    backup.write_text("\n".join(backup.read_text().splitlines()[:-1]) + "\n")
    target = tmp_path / "new.db"
    result = invoke("restore", "--from", str(backup), url=f"sqlite:///{target}")
    assert_user_error(result, "announces 3 jobs but holds 2", "nothing was restored")
    with Conveyor(f"sqlite:///{target}") as app:
        assert app.list_jobs() == []


def test_restore_of_an_unknown_format(invoke: Invoke, tmp_path: Path) -> None:
    backup = tmp_path / "future.jsonl"
    backup.write_text('{"kind": "header", "format": 99}\n')
    result = invoke("restore", "--from", str(backup), url=f"sqlite:///{tmp_path / 'new.db'}")
    assert_user_error(result, "line 1:", "format version 99 is unknown")
    not_a_backup = tmp_path / "notes.txt"
    not_a_backup.write_text("hello\n")
    result = invoke("restore", "--from", str(not_a_backup))
    assert_user_error(result, "line 1: not a JSON object")


def test_backup_mistakes(invoke: Invoke, filled: str, tmp_path: Path) -> None:
    result = invoke("backup", "--to", str(tmp_path / "no" / "such" / "folder.jsonl"))
    assert_user_error(result, "cannot write the backup", "no folder")
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    assert_user_error(
        invoke("backup", "--to", str(tmp_path / "x.jsonl"), url=missing), "no database"
    )
    assert not (tmp_path / "x.jsonl").exists()


def test_copy_mistakes(invoke: Invoke, filled: str, tmp_path: Path) -> None:
    new = f"sqlite:///{tmp_path / 'new.db'}"
    assert_user_error(
        invoke("copy", "--from", "mysql://db/jobs", "--to", new), "unsupported database URL"
    )
    assert_user_error(
        invoke("copy", "--from", filled, "--to", "redis-ish:/x"), "unsupported database URL"
    )
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    assert_user_error(invoke("copy", "--from", missing, "--to", new), "no database at")
    assert_user_error(invoke("copy", "--from", filled, "--to", filled), "already holds jobs")
    assert_user_error(invoke("copy", "--from", filled), "Missing option '--to'")


def test_copy_from_the_apps_database(invoke: Invoke, filled: str, tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    result = invoke("copy", "--to", target)  # the database of --url, as every command
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"copied {filled} to {target}: 1 queue setting, 3 jobs")
