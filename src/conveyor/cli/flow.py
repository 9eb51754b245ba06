"""Flow control commands: pause, resume, quiet hours and rate limits of queues
(``conveyor queues ...``), and ``conveyor jobs why``."""

from __future__ import annotations

import math

import click

from conveyor.limits.times import parse_moment, show
from conveyor.limits.why import document

from .core import Runtime, app_option, json_option, option, pass_runtime
from .output import cell, echo_json, table
from .params import JOB_ID


def _until(at: float | None) -> str | None:
    return None if at is None else show(at)


@click.command("gates")
@app_option
@json_option
@pass_runtime
def list_gates(runtime: Runtime, as_json: bool) -> None:
    """List every queue with gates: its cap, pause, quiet hours and rate limit."""
    app = runtime.existing_app()
    gates = app.queue_gates()
    if as_json:
        echo_json([gate.to_dict() for gate in gates])
        return
    now = app.backend.now()
    shown = [
        g
        for g in gates
        if g.max_running is not None or g.paused(now) or g.quiet is not None or g.rate is not None
    ]
    if not shown:
        click.echo("no gates")
        return
    rows = [
        (
            g.queue,
            g.max_running,
            _until(g.paused_until) if g.paused(now) else None,
            None if g.quiet is None else g.quiet.describe(),
            None if g.rate is None else g.rate.describe(),
        )
        for g in shown
    ]
    click.echo(table(("QUEUE", "CAP", "PAUSED UNTIL", "QUIET HOURS", "RATE"), rows, right=("CAP",)))


@click.command("pause")
@click.argument("name")
@option(
    "--until",
    metavar="TIME",
    envvar="CONVEYOR_QUEUES_PAUSE_UNTIL",
    help="Resume by itself at TIME: 30m, 2h, 1d from now, or 2026-12-02T08:00[+01:00] "
    "(this machine's time zone when none is given). Default: until resumed.",
)
@app_option
@json_option
@pass_runtime
def pause(runtime: Runtime, name: str, until: str | None, as_json: bool) -> None:
    """Start no job of queue NAME on any worker until resumed (or --until TIME).

    Running jobs finish; enqueue goes on. Workers follow within about a second.
    """
    app = runtime.existing_app()
    at = None if until is None else parse_moment(until, app.backend.now())
    app.pause_queue(name, at)
    if as_json:
        echo_json({"queue": name, "paused": True, "paused_until": at})
    else:
        click.echo(f"queue {cell(name)}: paused until {show(math.inf if at is None else at)}")


@click.command("resume")
@click.argument("name")
@app_option
@json_option
@pass_runtime
def resume(runtime: Runtime, name: str, as_json: bool) -> None:
    """Let queue NAME start jobs again; idle workers take them within about a second."""
    runtime.existing_app().resume_queue(name)
    if as_json:
        echo_json({"queue": name, "paused": False})
    else:
        click.echo(f"queue {cell(name)}: resumed")


@click.command("quiet")
@click.argument("name")
@click.argument("windows", metavar="[WINDOWS]", required=False)
@option(
    "--days",
    envvar="CONVEYOR_QUEUES_QUIET_DAYS",
    help="Days of the week: mon-fri, sat,sun ... Default: every day.",
)
@option(
    "--timezone",
    default="UTC",
    show_default=True,
    envvar="CONVEYOR_QUEUES_QUIET_TIMEZONE",
    help="IANA time zone of the windows, e.g. Europe/Berlin.",
)
@option(
    "--none",
    "remove",
    is_flag=True,
    envvar="CONVEYOR_QUEUES_QUIET_NONE",
    help="Remove the quiet hours of queue NAME.",
)
@app_option
@json_option
@pass_runtime
def quiet(
    runtime: Runtime,
    name: str,
    windows: str | None,
    days: str | None,
    timezone: str,
    remove: bool,
    as_json: bool,
) -> None:
    """Start no job of queue NAME during WINDOWS of local time, e.g. 08:00-18:00 (several
    separated by commas; 22:00-06:00 crosses midnight); --none removes them.

    A moment is quiet when its wall-clock time in --timezone lies in a window (see the README
    on daylight saving time). Running jobs finish.
    """
    if (windows is None) == (not remove):
        raise click.UsageError("give WINDOWS such as 08:00-18:00, or --none (not both)")
    app = runtime.existing_app()
    app.set_quiet_hours(name, windows, days=days, timezone=timezone)
    gate = next((g for g in app.queue_gates() if g.queue == name), None)
    described = None if gate is None or gate.quiet is None else gate.quiet.describe()
    if as_json:
        echo_json({"queue": name, "quiet": described})
    elif described is None:
        click.echo(f"queue {cell(name)}: no quiet hours")
    else:
        click.echo(f"queue {cell(name)}: quiet {cell(described)}")


@click.command("rate")
@click.argument("name")
@click.argument("rate", metavar="[RATE]", required=False)
@option(
    "--none",
    "remove",
    is_flag=True,
    envvar="CONVEYOR_QUEUES_RATE_NONE",
    help="Remove the rate limit of queue NAME.",
)
@app_option
@json_option
@pass_runtime
def rate(runtime: Runtime, name: str, rate: str | None, remove: bool, as_json: bool) -> None:
    """Start at most RATE jobs of queue NAME across every worker: 100/m, 5/s, 1000/h, 3/10s;
    --none removes the limit. Starts are spaced evenly (100/m: one every 0.6 s)."""
    if (rate is None) == (not remove):
        raise click.UsageError("give a RATE such as 100/m, or --none (not both)")
    app = runtime.existing_app()
    app.set_rate_limit(name, rate)
    gate = next((g for g in app.queue_gates() if g.queue == name), None)
    described = None if gate is None or gate.rate is None else gate.rate.describe()
    if as_json:
        echo_json({"queue": name, "rate_limit": described})
    elif described is None:
        click.echo(f"queue {cell(name)}: no rate limit")
    else:
        click.echo(f"queue {cell(name)}: at most {described}")


@click.command("why")
@click.argument("job_id", type=JOB_ID, metavar="ID")
@app_option
@json_option
@pass_runtime
def why(runtime: Runtime, job_id: int, as_json: bool) -> None:
    """Why is job ID not running? Every gate that holds it: its run_at, its dependencies,
    its queue paused or quiet, a cap reached, a rate limit, no live worker for its queue."""
    app = runtime.existing_app()
    holds = app.why(job_id)
    job = app.get_job(job_id)
    if as_json:
        echo_json(document(job, holds))
        return
    click.echo(f"job {job.id} ({cell(job.task)}, queue {cell(job.queue)}): {job.state.value}")
    if holds:
        for hold in holds:
            click.echo(f"  waiting: {cell(hold.reason)}")
    elif job.state.is_terminal or job.state.value == "running":
        click.echo("  not waiting")
    else:
        click.echo("  nothing holds it: a worker should start it shortly")
