"""``conveyor top``: queues and workers, live.

Each frame reads the job counts by queue and state, the oldest ready job of each queue, the
per-minute aggregates of the last minutes (jobs finished by every worker of the fleet, which
outlive pruning), the workers and what each is running -- reads that take no write lock and
touch no finished job but through the counts -- once a second until Ctrl-C. On a terminal rich
redraws it in place; off a terminal each frame is printed after the last, plain. ``--once``
prints one frame.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click

from conveyor import history
from conveyor.app import Conveyor
from conveyor.backends.tally import minute_of
from conveyor.job import JobState
from conveyor.worker_info import WorkerHealth, WorkerInfo

from .core import Runtime, app_option, json_option, option, pass_runtime
from .output import ago, drawn_table, echo_json, utc, worker_state
from .terminal import console, needed_width, render, stdout_is_terminal

#: Seconds between frames.
INTERVAL = 1.0
#: Minutes (the current one, filling, and the ones before) a queue's finish rate spans.
RATE_MINUTES = 5

#: Columns of the queue table, whether or not a queue has such jobs: what waits and runs.
ALWAYS_SHOWN = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class QueueRow:
    name: str
    jobs: Mapping[JobState, int]
    #: Jobs finished per minute over the last RATE_MINUTES, by every worker of the fleet.
    per_minute: float
    #: Seconds the oldest ready job has waited; None with none ready.
    oldest_wait: float | None


@dataclass(frozen=True)
class WorkerRow:
    info: WorkerInfo
    running: int


@dataclass(frozen=True)
class Frame:
    #: The database's clock when it was read.
    at: float
    queues: list[QueueRow]
    workers: list[WorkerRow]

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "queues": [
                {
                    "name": row.name,
                    "jobs": {s.value: row.jobs.get(s, 0) for s in JobState},
                    "finished_per_minute": row.per_minute,
                    "oldest_ready_age": row.oldest_wait,
                }
                for row in self.queues
            ],
            "workers": [{**row.info.to_dict(), "running": row.running} for row in self.workers],
        }


def finish_rates(app: Conveyor, at: float) -> dict[str, float]:
    """Jobs that ended (succeeded, dead, cancelled) per minute by queue, from the per-minute
    aggregates every worker writes as it finishes jobs: the minutes since the start of the
    one RATE_MINUTES - 1 before the current, over the time they span up to ``at``."""
    since = minute_of(at) - (RATE_MINUTES - 1) * 60
    span = max(at - since, 1.0) / 60.0
    ended = history.per_queue(app.backend.minute_stats(since))
    return {queue: row.ended / span for queue, row in ended.items()}


def read_frame(app: Conveyor) -> Frame:
    backend = app.backend
    at = backend.now()
    counts = backend.stats()
    oldest = backend.oldest_ready()
    workers = backend.list_workers()
    running = backend.running_by_worker()
    per_minute = finish_rates(app, at)
    queues = [
        QueueRow(
            name,
            counts.get(name, {}),
            per_minute.get(name, 0.0),
            None if name not in oldest else max(at - oldest[name], 0.0),
        )
        for name in sorted({*counts, *oldest, *per_minute})
    ]
    return Frame(at, queues, [WorkerRow(w, running.get(w.id, 0)) for w in workers])


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else ago(seconds).removesuffix(" ago")


def _rate(per_minute: float) -> str:
    return f"{per_minute:.1f}"


def frame_view(frame: Frame, *, terminal: bool) -> Any:
    """The frame as one renderable: a heading, the queues, the workers."""
    from rich.console import Group
    from rich.text import Text

    states = [
        s for s in JobState if s in ALWAYS_SHOWN or any(row.jobs.get(s) for row in frame.queues)
    ]
    queue_headers = ["QUEUE", *(s.value.upper() for s in states), "DONE/MIN", "OLDEST WAIT"]
    queue_rows: list[Sequence[object]] = [
        [
            row.name,
            *(row.jobs.get(s, 0) for s in states),
            _rate(row.per_minute),
            _age(row.oldest_wait),
        ]
        for row in frame.queues
    ]
    worker_headers = ["WORKER", "HOST", "PID", "RUNNING", "LAST BEAT", "HEALTH", "STATE"]
    worker_rows: list[Sequence[object]] = [
        [
            row.info.id,
            row.info.host,
            row.info.pid,
            f"{row.running}/{row.info.concurrency}",
            ago(row.info.last_beat_age),
            row.info.health,
            worker_state(row.info),
        ]
        for row in frame.workers
    ]
    live = sum(1 for row in frame.workers if row.info.health is not WorkerHealth.DEAD)
    heading = Text(
        f"conveyor top  {utc(frame.at)} UTC  {len(frame.queues)} queue(s), {live} worker(s) alive",
        style="bold" if terminal else "",
    )
    parts: list[Any] = [heading, Text("")]
    if queue_rows:
        parts.append(
            drawn_table(queue_headers, queue_rows, right=set(queue_headers[1:]), terminal=terminal)
        )
    else:
        parts.append(Text("no jobs"))
    parts.append(Text(""))
    if worker_rows:
        parts.append(
            drawn_table(worker_headers, worker_rows, right={"PID", "RUNNING"}, terminal=terminal)
        )
    else:
        parts.append(Text("no workers"))
    return Group(*parts)


def run_live(
    next_frame: Callable[[], Frame],
    *,
    terminal: bool,
    as_json: bool = False,
    interval: float = INTERVAL,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Show a new frame every ``interval`` seconds until Ctrl-C (KeyboardInterrupt), which
    ends it quietly: redrawn in place on a terminal, else printed one after the other (as
    one JSON object per line with ``as_json``)."""
    try:
        if terminal and not as_json:
            from rich.live import Live

            out = console(terminal=True)
            with Live(console=out, auto_refresh=False, screen=False) as live:
                while True:
                    view = frame_view(next_frame(), terminal=True)
                    # The window's width (read each frame: it may be resized), or the
                    # tables' if wider: a worker id is never cut.
                    out.width = max(shutil.get_terminal_size().columns, needed_width(view))
                    live.update(view, refresh=True)
                    sleep(interval)
        else:
            while True:
                frame = next_frame()
                if as_json:
                    click.echo(json.dumps(frame.to_dict()))
                else:
                    click.echo(render(frame_view(frame, terminal=False), terminal=False))
                    click.echo("")
                sleep(interval)
    except KeyboardInterrupt:
        return


@click.command()
@option("--once", is_flag=True, envvar="CONVEYOR_TOP_ONCE", help="Print one frame and exit.")
@option(
    "--interval",
    type=click.FloatRange(min=0.1, max=3600),
    default=INTERVAL,
    show_default=True,
    envvar="CONVEYOR_TOP_INTERVAL",
    help="Seconds between frames.",
)
@app_option
@json_option
@pass_runtime
def top(runtime: Runtime, once: bool, interval: float, as_json: bool) -> None:
    """Queues and workers, live: jobs by state, jobs finished per minute and the oldest
    ready job's wait per queue; each worker's host, pid, running jobs and last heartbeat.

    Refreshed every second until Ctrl-C. Finishes per minute count every worker of the
    fleet over the last five minutes, from the per-minute aggregates in the database.
    --once prints one frame (with --json, as JSON)."""
    app = runtime.existing_app()
    if once:
        frame = read_frame(app)
        if as_json:
            echo_json(frame.to_dict())
        else:
            click.echo(render(frame_view(frame, terminal=stdout_is_terminal())))
        return
    run_live(
        lambda: read_frame(app),
        terminal=stdout_is_terminal(),
        as_json=as_json,
        interval=interval,
    )
