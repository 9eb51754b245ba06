"""`conveyor jobs list|show|cancel` and `conveyor stats`."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import Conveyor
from tests.cli.support import Invoke, WriteApp, assert_user_error, output_json


def enqueue(invoke: Invoke, task: str = "t", *args: str) -> int:
    result = invoke("enqueue", task, *args)
    assert result.exit_code == 0, result.output
    return int(result.stdout)


def test_list_shows_newest_first_in_an_aligned_table(invoke: Invoke) -> None:
    first = enqueue(invoke, "emails.send", "--queue", "emails")
    second = enqueue(invoke, "images.resize", "--priority", "high")
    result = invoke("jobs", "list")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "ID",
        "STATE",
        "TASK",
        "QUEUE",
        "PRI",
        "TRIES",
        "RUN",
        "AT",
        "(UTC)",
        "NOTE",
    ]
    assert [int(row.split()[0]) for row in rows] == [second, first]
    assert rows[0].split()[1:6] == ["queued", "images.resize", "default", "50", "0/3"]
    # Aligned: every row starts its TASK column where the header does.
    column = header.index("TASK")
    assert all(row[column - 2 : column] == "  " for row in rows)


def test_list_filters_and_pages(invoke: Invoke) -> None:
    ids = [enqueue(invoke, "a", "--queue", "q1") for _ in range(3)]
    other = enqueue(invoke, "b", "--queue", "q2")
    cancelled = enqueue(invoke, "a", "--queue", "q1")
    assert invoke("jobs", "cancel", str(cancelled)).exit_code == 0

    def listed(*args: str) -> list[int]:
        return [job["id"] for job in output_json(invoke("jobs", "list", "--json", *args))]

    assert listed("--queue", "q2") == [other]
    assert listed("--task", "a", "--state", "queued") == ids[::-1]
    assert listed("--state", "cancelled", "--state", "queued", "--queue", "q1") == [
        cancelled,
        *ids[::-1],
    ]
    assert listed("--limit", "2") == [cancelled, other]
    assert listed("--limit", "2", "--before-id", str(other)) == [ids[2], ids[1]]
    paged = invoke("jobs", "list", "--limit", "1")
    assert f"--before-id {cancelled}" in paged.stderr
    keyed = enqueue(invoke, "a", "--idempotency-key", "order-7")
    assert listed("--key", "order-7") == [keyed]
    assert listed("--key", "order-8") == []


def test_list_of_nothing_says_so(invoke: Invoke, migrated: None) -> None:
    assert invoke("jobs", "list").stdout == "no jobs\n"
    assert output_json(invoke("jobs", "list", "--json")) == []


def test_bad_state_is_a_user_error(invoke: Invoke, migrated: None) -> None:
    assert_user_error(invoke("jobs", "list", "--state", "sleeping"), "--state")


def test_show_prints_the_fields(invoke: Invoke) -> None:
    job_id = enqueue(invoke, "t", "--args", '[1, "two"]', "--idempotency-key", "k1")
    result = invoke("jobs", "show", str(job_id))
    assert result.exit_code == 0, result.output
    assert f"id:              {job_id}\n" in result.stdout
    assert "state:           queued\n" in result.stdout
    assert 'args:            [1, "two"]\n' in result.stdout
    assert "idempotency key: k1\n" in result.stdout


@pytest.mark.parametrize("command", ["show", "cancel"])
def test_unknown_job_is_a_user_error(invoke: Invoke, migrated: None, command: str) -> None:
    assert_user_error(invoke("jobs", command, "999"), "no job with id 999")


def test_cancel_a_waiting_job(invoke: Invoke) -> None:
    job_id = enqueue(invoke, "t", "--delay", "60")
    result = invoke("jobs", "cancel", str(job_id))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"job {job_id} is cancelled\n"
    assert output_json(invoke("jobs", "show", str(job_id), "--json"))["state"] == "cancelled"


def test_cancel_a_running_job_asks_its_worker(invoke: Invoke, url: str) -> None:
    job_id = enqueue(invoke, "t")
    with Conveyor(url) as app:  # claim it as a worker would, so that it is running
        (claimed,) = app.backend.claim("test-worker", None, 1, 60.0)
    assert claimed.id == job_id
    result = invoke("jobs", "cancel", str(job_id))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"job {job_id} is running: its worker was asked to cancel it\n"
    shown = invoke("jobs", "show", str(job_id)).stdout
    assert "worker:           test-worker\n" in shown
    assert "cancel requested: yes\n" in shown
    listed = invoke("jobs", "list").stdout.splitlines()[1]
    assert listed.endswith("cancel requested")


def test_cancelling_a_finished_job_is_an_invalid_transition(
    invoke: Invoke, write_app: WriteApp
) -> None:
    module = write_app()
    job_id = enqueue(invoke, f"{module}.add", "--args", "[1, 2]", "--app", f"{module}:app")
    assert invoke("worker", "--app", f"{module}:app", "--burst").exit_code == 0
    assert_user_error(invoke("jobs", "cancel", str(job_id)), f"cannot cancel job {job_id}")


def test_reading_a_database_that_does_not_exist_creates_nothing(
    invoke: Invoke, tmp_path: Path
) -> None:
    commands = [["stats"], ["jobs", "list"], ["jobs", "show", "1"], ["jobs", "cancel", "1"]]
    commands += [["dlq", "list"], ["dlq", "requeue", "1"], ["schema", "verify"]]
    for command in commands:
        assert_user_error(invoke(*command), "no database at")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_database_is_a_user_error(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 100)
    assert_user_error(invoke("stats", url=f"sqlite:///{path}"), "not a usable SQLite database")
    assert_user_error(invoke("enqueue", "t", url=f"sqlite:///{path}"), "not a usable SQLite")
    assert path.read_text().startswith("these are my notes")


def test_stats_counts_per_queue_and_state(invoke: Invoke) -> None:
    enqueue(invoke, "a", "--queue", "emails")
    enqueue(invoke, "a", "--queue", "emails")
    enqueue(invoke, "a", "--queue", "images", "--delay", "60")
    cancelled = enqueue(invoke, "a", "--queue", "images")
    invoke("jobs", "cancel", str(cancelled))

    counts = output_json(invoke("stats", "--json"))
    assert counts["emails"]["queued"] == 2
    assert counts["images"] == {
        "blocked": 0,
        "scheduled": 1,
        "queued": 0,
        "running": 0,
        "retrying": 0,
        "succeeded": 0,
        "dead": 0,
        "cancelled": 1,
    }
    table = invoke("stats").stdout.splitlines()
    assert table[0].split() == ["QUEUE", "SCHEDULED", "QUEUED", "CANCELLED", "TOTAL"]
    assert table[1].split() == ["emails", "0", "2", "0", "2"]
    assert table[2].split() == ["images", "1", "0", "1", "2"]
    assert table[3].split() == ["(all)", "1", "2", "1", "4"]


def test_stats_of_an_empty_database(invoke: Invoke, migrated: None) -> None:
    assert invoke("stats").stdout == "no jobs\n"
