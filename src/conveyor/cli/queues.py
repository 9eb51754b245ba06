"""Commands on queues: list them with their jobs and caps, and cap their running jobs."""

from __future__ import annotations

import click

from conveyor.task import MAX_CAP

from .core import Runtime, app_option, json_option, option, pass_runtime
from .output import cell, echo_json, queues_json, queues_table


@click.group(invoke_without_command=True)
@app_option
@json_option
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """List the queues (the default), or cap the jobs of one running at once."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_queues, as_json=as_json)


@queues.command("list")
@app_option
@json_option
@pass_runtime
def list_queues(runtime: Runtime, as_json: bool) -> None:
    """List every queue that holds jobs or has a cap: its cap on running jobs and its jobs in
    each state."""
    app = runtime.existing_app()
    counts, caps = app.stats(), app.concurrency_limits()
    if as_json:
        echo_json(queues_json(counts, caps))
    elif not counts and not caps:
        click.echo("no queues")
    else:
        click.echo(queues_table(counts, caps))


@queues.command("limit")
@click.argument("name")
@click.argument(
    "max_running", metavar="[N]", type=click.IntRange(min=1, max=MAX_CAP), required=False
)
@option(
    "--none",
    "remove",
    is_flag=True,
    envvar="CONVEYOR_QUEUES_LIMIT_NONE",  # named after the flag, as the others are
    help="Remove the cap of queue NAME.",
)
@app_option
@json_option
@pass_runtime
def limit_queue(
    runtime: Runtime, name: str, max_running: int | None, remove: bool, as_json: bool
) -> None:
    """Let at most N jobs of queue NAME run at once, across every worker; --none removes the
    cap.

    Workers follow a change within about a second. Jobs already running over a lowered cap
    finish; the queue starts no more until it is back under its cap.
    """
    if max_running is not None and remove:
        raise click.UsageError("give a cap N or --none, not both")
    if max_running is None and not remove:
        raise click.UsageError("give a cap N (at least 1), or --none to remove the cap")
    runtime.existing_app().set_concurrency_limit(name, max_running)
    if as_json:
        echo_json({"queue": name, "max_running": max_running})
    elif max_running is None:
        click.echo(f"queue {cell(name)}: no cap")
    else:
        click.echo(f"queue {cell(name)}: at most {max_running} running job(s)")
