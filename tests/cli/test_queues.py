"""`conveyor queues [list]` and `conveyor queues limit`: caps on the running jobs of a queue."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor import Conveyor
from tests.cli.support import Invoke, WriteApp, assert_user_error, output_json
from tests.postgres.factory import new_schema, session_database


def enqueue(invoke: Invoke, queue: str, count: int = 1) -> None:
    for _ in range(count):
        result = invoke("enqueue", "t", "--queue", queue)
        assert result.exit_code == 0, result.output


def test_list_shows_every_queue_with_its_cap_and_jobs(invoke: Invoke) -> None:
    enqueue(invoke, "api", 3)
    enqueue(invoke, "default")
    assert invoke("queues", "limit", "api", "2").stdout == "queue api: at most 2 running job(s)\n"
    assert invoke("queues", "limit", "idle", "7").exit_code == 0
    for command in (["queues"], ["queues", "list"]):
        result = invoke(*command)
        assert result.exit_code == 0, result.output
        header, *rows = result.stdout.splitlines()
        assert header.split() == ["QUEUE", "CAP", "QUEUED", "RUNNING", "TOTAL"]
        assert [row.split() for row in rows] == [
            ["api", "2", "3", "0", "3"],
            ["default", "-", "1", "0", "1"],
            ["idle", "7", "0", "0", "0"],
        ]
        # Numbers align right under their header.
        assert all(len(row) == len(header) for row in rows)


def test_list_as_json(invoke: Invoke) -> None:
    enqueue(invoke, "api", 2)
    assert invoke("queues", "limit", "api", "5").exit_code == 0
    listed = output_json(invoke("queues", "--json"))
    assert listed == output_json(invoke("queues", "list", "--json"))
    assert list(listed) == ["api"]
    assert listed["api"]["max_running"] == 5
    assert listed["api"]["jobs"]["queued"] == 2
    assert listed["api"]["jobs"]["running"] == 0
    assert set(listed["api"]["jobs"]) >= {"queued", "running", "succeeded", "dead"}


def test_no_queues_says_so(invoke: Invoke, migrated: None) -> None:
    assert invoke("queues").stdout == "no queues\n"
    assert output_json(invoke("queues", "--json")) == {}


def test_limit_sets_changes_and_removes_a_cap(invoke: Invoke, url: str) -> None:
    enqueue(invoke, "api")
    assert output_json(invoke("queues", "limit", "api", "3", "--json")) == {
        "queue": "api",
        "max_running": 3,
    }
    assert invoke("queues", "limit", "api", "4").exit_code == 0
    with Conveyor(url) as app:
        assert app.concurrency_limits() == {"api": 4}
    removed = invoke("queues", "limit", "api", "--none")
    assert removed.stdout == "queue api: no cap\n"
    with Conveyor(url) as app:
        assert app.concurrency_limits() == {}
    assert output_json(invoke("queues", "--json"))["api"]["max_running"] is None


def test_the_none_flag_has_its_twin(invoke: Invoke) -> None:
    enqueue(invoke, "api")
    assert invoke("queues", "limit", "api", "3").exit_code == 0
    result = invoke("queues", "limit", "api", env={"CONVEYOR_QUEUES_LIMIT_NONE": "1"})
    assert result.stdout == "queue api: no cap\n"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["api", "0"], "0 is not in the range"),
        (["api", "-3"], "-3"),
        (["api", "many"], "'many' is not a valid integer"),
        (["api", "2147483648"], "not in the range"),
        (["api"], "give a cap N (at least 1), or --none"),
        (["api", "3", "--none"], "not both"),
        (["", "3"], "queue name must be 1-200 characters"),
        (["q" * 201, "3"], "queue name must be 1-200 characters"),
    ],
    ids=["zero", "negative", "word", "too-big", "nothing", "both", "empty-name", "long-name"],
)
def test_bad_limits_are_user_errors(
    invoke: Invoke, migrated: None, args: list[str], fragment: str
) -> None:
    assert_user_error(invoke("queues", "limit", *args), fragment)
    assert output_json(invoke("queues", "--json")) == {}, "nothing was written"


def test_a_missing_database_is_a_user_error(invoke: Invoke) -> None:
    assert_user_error(invoke("queues"), "no database at")
    assert_user_error(invoke("queues", "limit", "api", "3"), "no database at")


def test_an_unknown_subcommand_is_a_user_error(invoke: Invoke, migrated: None) -> None:
    assert_user_error(invoke("queues", "limits"), "No such command")


CAPPED_APP = """
import time

from conveyor import Conveyor

app = Conveyor()

@app.task(queue="api")
def call() -> int:
    time.sleep(0.05)  # the work: long enough for the worker's slots to overlap
    return app.stats()["api"]["running"]
"""


def test_a_worker_keeps_to_a_cap_set_on_the_command_line(
    invoke: Invoke, write_app: WriteApp
) -> None:
    """Each job returns how many jobs of its queue ran as it finished; a worker with four
    slots runs at most two at once."""
    module = write_app(CAPPED_APP)
    for _ in range(8):
        assert invoke("enqueue", f"{module}.call", "--app", f"{module}:app").exit_code == 0
    assert invoke("queues", "limit", "api", "2").exit_code == 0
    worker = invoke("worker", "--app", f"{module}:app", "--burst", "--concurrency", "4")
    assert worker.exit_code == 0, worker.output
    jobs = output_json(invoke("jobs", "list", "--json"))
    assert [job["state"] for job in jobs] == ["succeeded"] * 8
    assert 1 <= max(job["result"] for job in jobs) <= 2


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    database = session_database()
    schema = new_schema()
    yield database.url, schema
    database.drop_schema(schema)


def test_queues_on_postgresql(invoke: Invoke, postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    env = {"CONVEYOR_POSTGRES_SCHEMA": schema}
    assert invoke("queues", "limit", "api", "2", url=url, env=env).exit_code == 0
    assert invoke("enqueue", "t", "--queue", "api", url=url, env=env).exit_code == 0
    listed = output_json(invoke("queues", "--json", url=url, env=env))
    assert listed["api"]["max_running"] == 2
    assert listed["api"]["jobs"]["queued"] == 1
    assert invoke("queues", "limit", "api", "--none", url=url, env=env).exit_code == 0
    assert output_json(invoke("queues", "--json", url=url, env=env))["api"]["max_running"] is None
