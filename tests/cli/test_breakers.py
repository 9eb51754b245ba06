"""`conveyor breakers [list|open|close]`, and the breaker gate in `conveyor jobs show`."""

from __future__ import annotations

import pytest

from tests.cli.support import Invoke, WriteApp, assert_user_error, output_json

SOURCE = """
from conveyor import Conveyor

app = Conveyor()
app.breaker("partner-api", failures=2, window=60, cooldown=30)
app.breaker("mail-relay")

@app.task(breaker="partner-api")
def call_partner() -> None:
    raise ConnectionError("partner down")
"""


@pytest.fixture
def app_option(write_app: WriteApp) -> list[str]:
    return ["--app", f"{write_app(SOURCE)}:app"]


def test_list_shows_declared_breakers_closed(
    invoke: Invoke, app_option: list[str], migrated: None
) -> None:
    for command in (["breakers"], ["breakers", "list"]):
        result = invoke(*command, *app_option)
        assert result.exit_code == 0, result.output
        header, *rows = result.stdout.splitlines()
        assert header.split() == [
            "BREAKER",
            "STATE",
            "FAILURES",
            "OPENED",
            "NEXT",
            "PROBE",
            "TASKS",
        ]
        assert [row.split()[:5] for row in rows] == [
            ["mail-relay", "closed", "0", "-", "-"],
            ["partner-api", "closed", "0", "-", "-"],
        ]


def test_open_and_close_by_hand(invoke: Invoke, app_option: list[str]) -> None:
    module = app_option[1].split(":")[0]
    enqueued = invoke("enqueue", f"{module}.call_partner", *app_option)
    assert enqueued.exit_code == 0, enqueued.output
    job_id = enqueued.stdout.strip()

    opened = invoke("breakers", "open", "partner-api", *app_option)
    assert opened.stdout == "breaker partner-api: open until closed by hand\n"
    listed_json = {b["name"]: b for b in output_json(invoke("breakers", "--json", *app_option))}
    row = listed_json["partner-api"]
    assert row["state"] == "open" and row["next_probe_at"] is None
    assert row["tasks"] == [f"{module}.call_partner"]
    listed = invoke("breakers", *app_option).stdout
    assert "closed by hand" in listed

    shown = invoke("jobs", "show", job_id, *app_option)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[-1] == (
        "waiting: breaker partner-api open until closed by hand"
    )
    assert output_json(invoke("jobs", "show", job_id, "--json", *app_option))["waiting"] == (
        "waiting: breaker partner-api open until closed by hand"
    )

    # Without the app, a stored breaker is known by its row.
    closed = invoke("breakers", "close", "partner-api", "--json")
    assert closed.exit_code == 0, closed.output
    assert output_json(closed)["state"] == "closed"
    shown = invoke("jobs", "show", job_id, "--json", *app_option)
    assert "waiting" not in output_json(shown)


def test_an_unknown_breaker_is_a_user_error(
    invoke: Invoke, app_option: list[str], migrated: None
) -> None:
    assert_user_error(
        invoke("breakers", "open", "nope", *app_option), "unknown breaker 'nope'", "mail-relay"
    )


def test_no_breakers_says_so(invoke: Invoke, migrated: None) -> None:
    assert invoke("breakers").stdout == "no breakers\n"
    assert output_json(invoke("breakers", "--json")) == []
