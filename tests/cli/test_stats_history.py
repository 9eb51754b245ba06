"""``conveyor stats --last-hour``: per task, from the per-minute aggregates every worker wrote."""

from __future__ import annotations

from conveyor import Conveyor
from tests.cli.support import Invoke, output_json


def test_last_hour_per_task(invoke: Invoke, url: str) -> None:
    with Conveyor(url) as app:

        @app.task(name="ok")
        def ok() -> None:
            return None

        @app.task(name="boom", max_attempts=1)
        def boom() -> None:
            raise RuntimeError("boom")

        for _ in range(3):
            app.enqueue("ok")
        app.enqueue("boom")
        app.worker(concurrency=1, burst=True).run()

    figures = output_json(invoke("stats", "--last-hour", "--json"))
    assert (figures["ok"]["succeeded"], figures["ok"]["retry_rate"]) == (3, 0.0)
    assert figures["ok"]["run_time"]["count"] == 3
    assert figures["boom"]["dead"] == 1
    lines = invoke("stats", "--last-hour").stdout.splitlines()
    assert lines[0].split()[:3] == ["TASK", "ENQUEUED", "SUCCEEDED"]
    assert [line.split()[0] for line in lines[1:]] == ["boom", "ok"]


def test_last_hour_of_an_idle_database(invoke: Invoke, migrated: None) -> None:
    assert invoke("stats", "--last-hour").stdout == "nothing tallied in the last hour\n"
    assert output_json(invoke("stats", "--last-hour", "--json")) == {}
