"""Commands on workers: list them with their health, and stop them through the database."""

from __future__ import annotations

import click

from conveyor.worker_info import WorkerState

from .core import Runtime, app_option, confirm, json_option, option, pass_runtime
from .output import echo_json, workers_table


@click.group(invoke_without_command=True)
@app_option
@json_option
@click.pass_context
def workers(ctx: click.Context, as_json: bool) -> None:
    """List the workers of this database (the default), or stop them."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_workers, as_json=as_json)


@workers.command("list")
@app_option
@json_option
@pass_runtime
def list_workers(runtime: Runtime, as_json: bool) -> None:
    """List workers, oldest first: where they run, what they serve, and their health.

    A worker is late once it missed a heartbeat, and dead once it went 3 heartbeats (at least
    5 s) without one; maintenance then hands its running jobs to other workers. Dead workers
    stay listed for an hour.
    """
    found = runtime.existing_app().workers()
    if as_json:
        echo_json([worker.to_dict() for worker in found])
    elif not found:
        click.echo("no workers")
    else:
        click.echo(workers_table(found))


@workers.command("stop")
@click.argument("worker_ids", nargs=-1, metavar="[ID]...")
@option(
    "--all",
    "every",
    is_flag=True,
    envvar="CONVEYOR_WORKERS_STOP_ALL",  # named after the flag, as the others are
    help="Every worker that is not dead.",
)
@option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@app_option
@json_option
@pass_runtime
def stop_workers(
    runtime: Runtime, worker_ids: tuple[str, ...], every: bool, yes: bool, as_json: bool
) -> None:
    """Ask workers to stop gracefully, on whatever host they run.

    Each learns it within about a second, stops claiming, finishes its running jobs (within its
    --grace) and exits with status 0. All the named workers or none.
    """
    if worker_ids and every:
        raise click.UsageError("give worker ids or --all, not both")
    if not worker_ids and not every:
        raise click.UsageError("give the ids of the workers (see `conveyor workers`), or --all")
    app = runtime.existing_app()
    if every:
        live = [w for w in app.workers() if w.state is not WorkerState.DEAD]
        if live:
            confirm(f"Stop all {len(live)} worker(s)", yes=yes)
    asked = app.stop_workers(worker_ids, every=every)
    if as_json:
        echo_json({"stop_requested": asked})
    elif not asked:
        click.echo("no workers")
    else:
        for worker_id in asked:
            click.echo(f"asked worker {worker_id} to stop")
