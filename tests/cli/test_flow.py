"""`conveyor queues pause|resume|quiet|rate|gates` and `conveyor jobs why`: flow control from the
command line (the gates themselves are tested in tests/contract/test_gates.py)."""

from __future__ import annotations

import pytest

from conveyor import Conveyor
from tests.cli.support import Invoke, assert_user_error, output_json


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
