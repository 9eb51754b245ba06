"""`conveyor schedules [list]`, `schedules pause NAME` and `schedules resume NAME`."""

from __future__ import annotations

import importlib
import os
import sys

from conveyor import Conveyor
from tests.cli.support import Invoke, WriteApp, assert_user_error, output_json

SCHEDULED_APP = """
from conveyor import Conveyor

app = Conveyor()

@app.periodic(cron="*/5 * * * *", timezone="Europe/Paris", name="digest")
@app.task(queue="mail")
def digest(scheduled_at: str) -> None:
    return None

@app.periodic(every=30)
def beat() -> None:
    return None
"""


def scheduled(write_app: WriteApp, url: str) -> tuple[str, Conveyor]:
    module = write_app(SCHEDULED_APP)
    sys.path.insert(0, os.getcwd())  # as the CLI does (write_app restores sys.path)
    app: Conveyor = importlib.import_module(module).app
    app.configure(url=url)
    return f"{module}:app", app


def test_list_shows_each_schedule_with_its_last_and_next_run(
    invoke: Invoke, write_app: WriteApp, url: str
) -> None:
    spec, app = scheduled(write_app, url)
    digest = app.schedules["digest"]
    tick = digest.latest_at_or_before(app.backend.now())
    assert tick is not None
    app.backend.register_schedules(["digest"])
    job = app.backend.enqueue_tick("digest", tick, digest.job(tick))
    assert job is not None
    result = invoke("schedules", "--app", spec)
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "TASK", "SCHEDULE"]
    assert len(rows) == 2
    beat_row = next(row for row in rows if "every 30s" in row)
    assert "active" in beat_row
    digest_row = next(row for row in rows if row.startswith("digest "))
    assert "cron */5 * * * * (Europe/Paris)" in digest_row
    assert f" {job.job_id} " in digest_row
    listed = output_json(invoke("schedules", "list", "--json", "--app", spec))
    by_name = {entry["name"]: entry for entry in listed}
    assert by_name["digest"]["last_tick"] == tick
    assert by_name["digest"]["last_job_id"] == job.job_id
    assert by_name["digest"]["next_tick"] == digest.next_after(tick)
    assert by_name["digest"]["task"].endswith(".digest")
    assert (
        by_name[app.schedules[next(n for n in app.schedules if n != "digest")].name]["last_tick"]
        is None
    )


def test_pause_and_resume(invoke: Invoke, write_app: WriteApp, url: str, migrated: None) -> None:
    spec, _ = scheduled(write_app, url)
    assert invoke("schedules", "pause", "digest", "--app", spec).stdout == (
        "schedule digest: paused\n"
    )
    [digest] = [
        e
        for e in output_json(invoke("schedules", "--json", "--app", spec))
        if e["name"] == "digest"
    ]
    assert digest["paused"] and digest["next_tick"] is None
    assert output_json(invoke("schedules", "resume", "digest", "--json", "--app", spec)) == {
        "schedule": "digest",
        "paused": False,
    }
    [digest] = [
        e
        for e in output_json(invoke("schedules", "--json", "--app", spec))
        if e["name"] == "digest"
    ]
    assert not digest["paused"] and digest["next_tick"] is not None


def test_an_unknown_schedule_is_a_one_line_error(
    invoke: Invoke, write_app: WriteApp, url: str, migrated: None
) -> None:
    spec, _ = scheduled(write_app, url)
    assert_user_error(invoke("schedules", "pause", "nightly", "--app", spec), "'nightly'", "digest")


def test_no_schedules_says_so(invoke: Invoke, migrated: None) -> None:
    assert invoke("schedules").stdout == "no schedules\n"
    assert output_json(invoke("schedules", "--json")) == []
