"""`conveyor queues pause|resume|quiet|rate|gates` and `conveyor jobs why`: flow control from the
command line (the gates themselves are tested in tests/contract/test_gates.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor import Conveyor
from conveyor.cli import cli
from tests.cli.support import Invoke, assert_user_error, output_json
from tests.engines import Engine, engine
from tests.support import enabled_backends


@pytest.fixture(params=enabled_backends())
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with engine(request.param, tmp_path) as found:
        yield found


def enqueue(invoke: Invoke, queue: str) -> int:
    result = invoke("enqueue", "t", "--queue", queue)
    assert result.exit_code == 0, result.output
    return int(result.stdout)


def test_pause_resume_and_why(invoke: Invoke, url: str) -> None:
    job_id = enqueue(invoke, "reports")
    assert invoke("queues", "pause", "reports").stdout == "queue reports: paused until resumed\n"
    result = invoke("jobs", "why", str(job_id))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"job {job_id} (t, queue reports): queued",
        "  waiting: queue reports is paused until resumed",
        "  waiting: no live worker serves queue reports",
    ]
    held = output_json(invoke("jobs", "why", str(job_id), "--json"))
    assert [h["gate"] for h in held["held_by"]] == ["paused", "no worker"]
    assert invoke("queues", "resume", "reports").stdout == "queue reports: resumed\n"
    with Conveyor(url) as app:
        assert app.backend.claim("w", ["reports"], 5, 30.0) != []
    result = invoke("jobs", "why", str(job_id))
    assert result.stdout.splitlines()[1:] == ["  not waiting"]


def test_why_names_every_gate_on_every_engine(database: Engine) -> None:
    with database.app() as app:
        app.breaker("partner-api", failures=1, window=60, cooldown=30)

        @app.task(name="limited", queue="api", rate_limit="1/h")
        def limited() -> None: ...

        @app.task(name="partner", queue="api", breaker="partner-api")
        def partner() -> None: ...

        @app.task(name="report", queue="reports")
        def report() -> None: ...

        running = limited.enqueue()
        assert [run.id for run in app.backend.claim("w", ["api"], 1, 60.0)] == [running.id]
        spent = limited.enqueue()
        held = partner.enqueue()
        child = report.options(depends_on=[running.id]).enqueue()
        later = report.options(delay=3600).enqueue()
        app.open_breaker("partner-api")
        app.set_concurrency_limit("api", 1)
        app.pause_queue("reports")
        app.set_quiet_hours("reports", "00:00-24:00")

    def gates(job_id: int) -> list[str]:
        result = CliRunner().invoke(
            cli,
            ["--url", database.url, "jobs", "why", str(job_id), "--json"],
            env=database.env,
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        return [hold["gate"] for hold in output_json(result)["held_by"]]

    assert gates(running.id) == []
    assert gates(spent.id) == ["cap", "rate", "no worker"]
    assert gates(held.id) == ["cap", "breaker", "no worker"]
    assert gates(child.id) == ["blocked", "paused", "quiet", "no worker"]
    assert gates(later.id) == ["scheduled", "paused", "quiet", "no worker"]


def test_pause_until(invoke: Invoke, url: str) -> None:
    enqueue(invoke, "reports")
    result = invoke("queues", "pause", "reports", "--until", "2h", "--json")
    paused = output_json(result)
    with Conveyor(url) as app:
        now = app.backend.now()
        [gate] = app.queue_gates()
    assert paused["paused_until"] == pytest.approx(now + 7200, abs=60)
    assert gate.paused_until == pytest.approx(paused["paused_until"])


def test_quiet_and_rate_and_the_list_of_gates(invoke: Invoke) -> None:
    enqueue(invoke, "reports")
    result = invoke(
        "queues", "quiet", "reports", "08:00-18:00", "--days", "mon-fri",
        "--timezone", "Europe/Berlin",
    )  # fmt: skip
    assert result.stdout == "queue reports: quiet 08:00-18:00 mon-fri Europe/Berlin\n"
    assert invoke("queues", "rate", "api", "100/m").stdout == "queue api: at most 100/m\n"
    assert invoke("queues", "limit", "api", "3").exit_code == 0
    header, *rows = invoke("queues", "gates").stdout.splitlines()
    assert header.split() == ["QUEUE", "CAP", "PAUSED", "UNTIL", "QUIET", "HOURS", "RATE"]
    assert [row.split() for row in rows] == [
        ["api", "3", "-", "-", "100/m"],
        ["reports", "-", "-", "08:00-18:00", "mon-fri", "Europe/Berlin", "-"],
    ]
    listed = output_json(invoke("queues", "gates", "--json"))
    assert [g["rate_limit"] for g in listed] == ["100/m", None]
    assert invoke("queues", "quiet", "reports", "--none").stdout == (
        "queue reports: no quiet hours\n"
    )
    assert invoke("queues", "rate", "api", "--none").stdout == "queue api: no rate limit\n"
    assert invoke("queues", "limit", "api", "--none").exit_code == 0
    assert invoke("queues", "gates").stdout == "no gates\n"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["queues", "rate", "api", "10/x"], "COUNT/UNIT"),
        (["queues", "rate", "api"], "give a RATE"),
        (["queues", "rate", "api", "5/s", "--none"], "not both"),
        (["queues", "quiet", "api", "8-9"], "HH:MM"),
        (["queues", "quiet", "api", "08:00-09:00", "--timezone", "Nowhere/City"], "time zone"),
        (["queues", "quiet", "api", "08:00-09:00", "--days", "someday"], "a day is one of"),
        (["queues", "pause", "api", "--until", "tomorrow"], "a time reads like"),
        (["jobs", "why", "99"], "no job with id 99"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(invoke: Invoke, args: list[str], fragment: str) -> None:
    enqueue(invoke, "api")  # the database exists
    assert_user_error(invoke(*args), fragment)
