"""`conveyor enqueue`: by name (raw) and through an imported app's registered task."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.cli.support import Invoke, WriteApp, assert_user_error, output_json


def test_enqueue_prints_the_job_id_and_stores_the_job(invoke: Invoke) -> None:
    result = invoke("enqueue", "billing.charge", "--args", '[42, "EUR"]', "--kwargs", '{"a": 1}')
    assert result.exit_code == 0, result.output
    job_id = int(result.stdout.strip())

    job = output_json(invoke("jobs", "show", str(job_id), "--json"))
    assert job["task"] == "billing.charge"
    assert job["args"] == [42, "EUR"]
    assert job["kwargs"] == {"a": 1}
    assert job["queue"] == "default"
    assert job["state"] == "queued"
    assert job["priority"] == 0
    assert job["max_attempts"] == 3


def test_enqueue_options_reach_the_job(invoke: Invoke) -> None:
    job = output_json(
        invoke(
            "enqueue",
            "reports.build",
            "--queue",
            "reports",
            "--priority",
            "critical",
            "--delay",
            "3600",
            "--max-attempts",
            "7",
            "--timeout",
            "2.5",
            "--json",
        )
    )
    assert job["queue"] == "reports"
    assert job["priority"] == 100
    assert job["state"] == "scheduled"
    assert job["run_at"] > job["created_at"] + 3000
    assert job["max_attempts"] == 7
    assert job["timeout"] == 2.5


@pytest.mark.parametrize(("given", "stored"), [("-5", -5), ("LOW", -50), ("high", 50)])
def test_priority_takes_numbers_and_level_names(invoke: Invoke, given: str, stored: int) -> None:
    job = output_json(invoke("enqueue", "t", "--priority", given, "--json"))
    assert job["priority"] == stored


def test_run_at_takes_iso8601_with_an_offset(invoke: Invoke) -> None:
    job = output_json(invoke("enqueue", "t", "--run-at", "2099-01-02T03:04:05+01:00", "--json"))
    assert job["state"] == "scheduled"
    assert job["run_at"] == datetime(2099, 1, 2, 2, 4, 5, tzinfo=UTC).timestamp()


def test_idempotency_key_returns_the_same_job(invoke: Invoke) -> None:
    first = output_json(invoke("enqueue", "t", "--idempotency-key", "order-7", "--json"))
    again = output_json(invoke("enqueue", "t", "--idempotency-key", "order-7", "--json"))
    assert again["id"] == first["id"]
    assert output_json(invoke("stats", "--json"))["default"]["queued"] == 1


def test_enqueue_through_the_app_uses_the_task_defaults(
    invoke: Invoke, write_app: WriteApp
) -> None:
    module = write_app()
    job = output_json(
        invoke("enqueue", f"{module}.add", "--args", "[1, 2]", "--app", f"{module}:app", "--json")
    )
    assert job["task"] == f"{module}.add"
    assert job["queue"] == "math"
    assert job["max_attempts"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--args", "[1,"], "not valid JSON"),
        (["--args", '{"x": 1}'], "expected a json array"),
        (["--kwargs", "[1]"], "expected a json object"),
        (["--kwargs", '{"x": NaN}'], "NaN is not JSON"),
        (["--args", "[Infinity]"], "Infinity is not JSON"),
        (["--kwargs", '{"x": 1, "x": 2}'], "duplicate key"),
        (["--args", '["a\\u0000b"]'], "NUL"),
        (["--priority", "urgent"], "unknown priority 'urgent'"),
        (["--priority", "1.5"], "unknown priority"),
        (["--delay", "-1"], "--delay"),
        (["--run-at", "tomorrow"], "not an ISO 8601 time"),
        (["--run-at", "2099-01-01T00:00:00"], "no UTC offset"),
        (["--delay", "1", "--run-at", "2099-01-01T00:00:00Z"], "either delay or run_at"),
        (["--max-attempts", "0"], "--max-attempts"),
        (["--timeout", "0"], "--timeout"),
        (["--queue", ""], "queue name"),
        (["--idempotency-key", ""], "idempotency_key"),
        (["--no-such-option"], "No such option"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    invoke: Invoke, migrated: None, args: list[str], message: str
) -> None:
    assert_user_error(invoke("enqueue", "t", *args), message)
    assert output_json(invoke("stats", "--json")) == {}


def test_a_task_name_the_schema_cannot_store_is_refused(invoke: Invoke, migrated: None) -> None:
    assert_user_error(invoke("enqueue", "x" * 501), "task name")
    assert output_json(invoke("stats", "--json")) == {}


def test_payload_over_the_limit_is_refused(invoke: Invoke, migrated: None) -> None:
    result = invoke(
        "enqueue", "t", "--args", '["' + "x" * 100 + '"]', env={"CONVEYOR_MAX_PAYLOAD_BYTES": "64"}
    )
    assert_user_error(result, "over the limit of 64 bytes")
    assert output_json(invoke("stats", "--json")) == {}


def test_unknown_task_with_app_lists_the_registered_ones(
    invoke: Invoke, migrated: None, write_app: WriteApp
) -> None:
    module = write_app()
    line = assert_user_error(
        invoke("enqueue", "nope", "--app", f"{module}:app"), "unknown task 'nope'"
    )
    assert f"{module}.add" in line
    assert output_json(invoke("stats", "--json")) == {}


def test_arguments_that_do_not_fit_the_signature_are_refused(
    invoke: Invoke, migrated: None, write_app: WriteApp
) -> None:
    module = write_app()
    result = invoke("enqueue", f"{module}.add", "--args", "[1]", "--app", f"{module}:app")
    assert_user_error(result, "arguments do not match", "missing a required argument: 'y'")
    assert output_json(invoke("stats", "--json")) == {}


def test_arguments_that_do_not_fit_the_type_hints_are_refused(
    invoke: Invoke, migrated: None, write_app: WriteApp
) -> None:
    module = write_app()
    result = invoke("enqueue", f"{module}.add", "--args", '[1, "2"]', "--app", f"{module}:app")
    assert_user_error(result, f"task {module}.add: argument y must be int, got str '2'")
    assert output_json(invoke("stats", "--json")) == {}


def test_bad_setting_in_the_environment_is_a_user_error(invoke: Invoke) -> None:
    assert_user_error(invoke("enqueue", "t", env={"CONVEYOR_LEASE": "soon"}), "CONVEYOR_LEASE")


def test_missing_directory_is_a_user_error(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("enqueue", "t", url=f"sqlite:///{tmp_path / 'no' / 'such' / 'jobs.db'}")
    assert_user_error(result, "does not exist")
    assert not (tmp_path / "no").exists()
