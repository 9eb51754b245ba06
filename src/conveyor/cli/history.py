"""``conveyor stats --last-hour``: per task, what every worker did in the last hour, from the
per-minute aggregates (conveyor/backends/tally.py, conveyor/history.py)."""

from __future__ import annotations

from typing import Any

import click

from conveyor import history
from conveyor.app import Conveyor

from .output import echo_json, table

HEADERS = (
    "TASK",
    "ENQUEUED",
    "SUCCEEDED",
    "RETRIED",
    "DEAD",
    "RESCUED",
    "RETRY RATE",
    "AVG RUN",
    "P95 RUN",
    "P95 WAIT",
)


def echo_last_hour(app: Conveyor, as_json: bool) -> None:
    tasks = history.by_task(app.minute_stats())
    if as_json:
        echo_json(tasks)
    elif not tasks:
        click.echo("nothing tallied in the last hour")
    else:
        click.echo(table(HEADERS, [_row(task, f) for task, f in tasks.items()], right=HEADERS[1:]))


def _row(task: str, figures: dict[str, Any]) -> list[object]:
    rate = figures["retry_rate"]
    return [
        task,
        figures["enqueued"],
        figures["succeeded"],
        figures["retried"],
        figures["dead"],
        figures["rescued"],
        "-" if rate is None else f"{rate:.1%}",
        _seconds(figures["run_time"]["avg"]),
        _seconds(figures["run_time"]["p95"]),
        _seconds(figures["queue_wait"]["p95"]),
    ]


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"
