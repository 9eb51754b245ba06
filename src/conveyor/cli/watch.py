"""``conveyor watch ID``: follow one job until it ends.

It shows the job's state, attempt, progress (``ctx.progress``) and last error as they change,
woken by the engine's finish notifications (``app.follow``, conveyor.results) and reading progress
every half second. On a terminal it draws a live panel with a progress bar; elsewhere it
prints one plain line per change, and with ``--json`` one JSON object per line. The exit
status tells how the job ended: 0 succeeded, 1 dead or cancelled (2: no such job).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import click

from conveyor.job import Job, JobState

from .core import Runtime, app_option, json_option, pass_runtime
from .output import cell, compact_json, shorten, utc
from .params import JOB_ID
from .terminal import console, stdout_is_terminal

#: What the exit status says about how the job ended.
EXIT_SUCCEEDED = 0
EXIT_FAILED = 1


@click.command()
@click.argument("job_id", type=JOB_ID, metavar="ID")
@app_option
@json_option
@pass_runtime
def watch(runtime: Runtime, job_id: int, as_json: bool) -> int:
    """Follow job ID live until it ends: state, attempt, progress, last error.

    Exit status 0 if it succeeded, 1 if it ended dead or cancelled, 2 if there is no such
    job. Off a terminal, one line per change (with --json, one JSON object per line)."""
    app = runtime.existing_app()
    changes = app.follow(job_id)
    if as_json:
        last = _print_each(changes, lambda job: json.dumps(watch_document(job)))
    elif stdout_is_terminal():
        last = _live(changes)
    else:
        last = _print_each(changes, line)
    return EXIT_SUCCEEDED if last.state is JobState.SUCCEEDED else EXIT_FAILED


def _print_each(changes: Iterator[Job], show: Any) -> Job:
    job = None
    for job in changes:
        click.echo(show(job))
    assert job is not None and job.state.is_terminal
    return job


def _live(changes: Iterator[Job]) -> Job:
    from rich.live import Live

    out = console(terminal=True)
    job = next(changes)
    with Live(panel(job), console=out, auto_refresh=False, transient=True) as live:
        for job in changes:
            live.update(panel(job), refresh=True)
    out.print(panel(job))
    return job


# --- what a change shows ------------------------------------------------------------------


def fraction(progress: Any) -> float | None:
    """The share done that ``progress`` states, if it states one: a number in [0, 1], or an
    object with ``total`` and one of ``done`` / ``current`` / ``completed``."""
    if isinstance(progress, bool):
        return None
    if isinstance(progress, int | float):
        value = float(progress)
    elif isinstance(progress, dict):
        total = progress.get("total")
        done = next((progress[k] for k in ("done", "current", "completed") if k in progress), None)
        numbers = (total, done)
        if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
            return None
        assert isinstance(total, int | float) and isinstance(done, int | float)
        if total <= 0:
            return None
        value = done / total
    else:
        return None
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else None


def progress_text(progress: Any) -> str | None:
    """Progress as words: the percentage it states, its message, or its JSON."""
    if progress is None:
        return None
    share = fraction(progress)
    if isinstance(progress, str):
        return cell(progress)
    if isinstance(progress, dict) and isinstance(progress.get("message"), str):
        message = cell(progress["message"])
        return message if share is None else f"{share:.0%} {message}"
    if share is not None and not isinstance(progress, dict):
        return f"{share:.0%}"
    text = shorten(cell(compact_json(progress)))
    return text if share is None else f"{share:.0%} {text}"


def error_text(job: Job) -> str | None:
    error = job.last_error
    if error is None:
        return None
    return shorten(cell(f"{error.type}: {error.message}" if error.message else error.type))


def waiting_text(job: Job) -> str | None:
    """What a job that is not ready waits for: its parents, or its time."""
    if job.state is JobState.BLOCKED:
        return f"waiting for {job.pending_parents} parent(s)"
    if job.state in (JobState.SCHEDULED, JobState.RETRYING):
        return f"runs at {utc(job.run_at)} UTC"
    return None


def line(job: Job) -> str:
    """One plain line: ``job 7 (resize): running, attempt 1/3, progress 40%``."""
    parts = [f"job {job.id} ({cell(job.task)}): {job.state.value}"]
    parts.append(f"attempt {job.attempts}/{job.max_attempts}")
    waiting = waiting_text(job)
    if waiting is not None:
        parts.append(waiting)
    progress = progress_text(job.progress)
    if progress is not None and job.state is not JobState.SUCCEEDED:
        parts.append(f"progress {progress}")
    if job.cancel_requested and job.state is JobState.RUNNING:
        parts.append("cancel requested")
    error = error_text(job)
    if error is not None and job.state is not JobState.SUCCEEDED:
        parts.append(f"last error {error}")
    if job.dead_reason:
        parts.append(f"reason {cell(job.dead_reason)}")
    if job.state is JobState.SUCCEEDED:
        parts.append(f"result {shorten(cell(compact_json(job.result)))}")
    return ", ".join(parts)


def watch_document(job: Job) -> dict[str, Any]:
    """One line of ``watch --json``."""
    error = job.last_error
    return {
        "id": job.id,
        "task": job.task,
        "queue": job.queue,
        "state": job.state.value,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "progress": job.progress,
        "cancel_requested": job.cancel_requested,
        "error": None if error is None else error.to_dict(),
        "dead_reason": job.dead_reason,
        "result": job.result,
        "finished_at": job.finished_at,
    }


_STATE_STYLE = {
    JobState.SUCCEEDED: "bold green",
    JobState.DEAD: "bold red",
    JobState.CANCELLED: "bold yellow",
    JobState.RUNNING: "bold cyan",
}


def panel(job: Job) -> Any:
    """The live view of one job, for a terminal."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    title = Text(f"job {job.id} ")
    title.append(job.task, style="bold")
    title.append(f"  queue {job.queue}", style="dim")
    grid.add_row("state", Text(job.state.value, style=_STATE_STYLE.get(job.state, "bold")))
    grid.add_row("attempt", f"{job.attempts}/{job.max_attempts}")
    waiting = waiting_text(job)
    if waiting is not None:
        grid.add_row("waiting", waiting)
    share = fraction(job.progress)
    if job.progress is not None and job.state is not JobState.SUCCEEDED:
        words = Text(progress_text(job.progress) or "")
        if share is not None:
            bar = Table.grid(padding=(0, 1))
            bar.add_row(ProgressBar(total=1.0, completed=share, width=30), words)
            grid.add_row("progress", bar)
        else:
            grid.add_row("progress", words)
    if job.cancel_requested and job.state is JobState.RUNNING:
        grid.add_row("cancel", "requested")
    error = error_text(job)
    if error is not None and job.state is not JobState.SUCCEEDED:
        grid.add_row("last error", Text(error, style="red"))
    if job.dead_reason:
        grid.add_row("reason", Text(cell(job.dead_reason)))
    if job.state is JobState.SUCCEEDED:
        grid.add_row("result", Text(shorten(cell(compact_json(job.result)))))
    return Group(title, grid)
