"""Commands on the schedules of periodic jobs: list them with their last and next runs, pause
and resume them."""

from __future__ import annotations

from collections.abc import Sequence

import click

from conveyor.limits.schedules import ScheduleInfo

from .core import Runtime, app_option, json_option, pass_runtime
from .output import cell, echo_json, table, utc

HEADERS = ["NAME", "TASK", "SCHEDULE", "STATE", "LAST RUN", "LAST JOB", "NEXT RUN"]


@click.group(invoke_without_command=True)
@app_option
@json_option
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """List the schedules of periodic jobs (the default), or pause and resume one."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_schedules, as_json=as_json)


@schedules.command("list")
@app_option
@json_option
@pass_runtime
def list_schedules(runtime: Runtime, as_json: bool) -> None:
    """List every schedule the app declares or the database holds: its task and timing, whether
    it is paused, its last tick (and that tick's job) and its next one, in UTC."""
    infos = runtime.existing_app().schedules_info()
    if as_json:
        echo_json([info.to_dict() for info in infos])
    elif not infos:
        click.echo("no schedules")
    else:
        click.echo(schedules_table(infos))


def schedules_table(infos: Sequence[ScheduleInfo]) -> str:
    rows = [
        [
            info.name,
            info.task or "(not declared by this app)",
            info.spec,
            "paused" if info.paused else "active",
            utc(info.last_tick),
            info.last_job_id,
            utc(info.next_tick),
        ]
        for info in infos
    ]
    return table(HEADERS, rows, right={"LAST JOB"})


@schedules.command("pause")
@click.argument("name")
@app_option
@json_option
@pass_runtime
def pause_schedule(runtime: Runtime, name: str, as_json: bool) -> None:
    """Stop enqueueing the ticks of schedule NAME, fleet-wide; jobs already enqueued still run.
    Ticks that pass while it is paused are dropped."""
    runtime.existing_app().pause_schedule(name)
    _done(name, True, as_json)


@schedules.command("resume")
@click.argument("name")
@app_option
@json_option
@pass_runtime
def resume_schedule(runtime: Runtime, name: str, as_json: bool) -> None:
    """Enqueue the ticks of schedule NAME again, from its next tick on."""
    runtime.existing_app().resume_schedule(name)
    _done(name, False, as_json)


def _done(name: str, paused: bool, as_json: bool) -> None:
    if as_json:
        echo_json({"schedule": name, "paused": paused})
    else:
        click.echo(f"schedule {cell(name)}: {'paused' if paused else 'active'}")
