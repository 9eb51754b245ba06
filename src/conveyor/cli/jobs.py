"""Commands on jobs: enqueue, jobs, dlq (the dead-letter queue) and stats."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import click

from conveyor.app import Conveyor
from conveyor.job import JobState
from conveyor.limits.breakers import breaker_gate
from conveyor.task import JobOptions, encode_job

from .core import (
    APP_HINT,
    FC,
    Runtime,
    UserError,
    app_option,
    confirm,
    json_option,
    option,
    pass_runtime,
    redact_url,
    require_database,
)
from .history import echo_last_hour
from .links import links_dict, links_lines
from .output import dead_table, echo_json, job_details, jobs_table, stats_json, stats_table
from .params import (
    BEFORE_ID,
    DELAY,
    IDEMPOTENCY_KEY,
    JOB_ID,
    JOB_STATE,
    LIMIT,
    MAX_ATTEMPTS,
    QUEUE,
    TASK,
    TIMEOUT,
    JsonValue,
    Priority,
    Timestamp,
)

#: Rows per read when collecting every dead job for --all.
PAGE = 1000


@click.command()
@click.argument("task", type=TASK)
@option(
    "--args",
    "args",
    type=JsonValue(list),
    default="[]",
    show_default=True,
    help="Positional arguments, as a JSON array.",
)
@option(
    "--kwargs",
    "kwargs",
    type=JsonValue(dict),
    default="{}",
    show_default=True,
    help="Keyword arguments, as a JSON object.",
)
@option(
    "--queue", type=QUEUE, help="Queue to put the job in.  [default: the task's, else 'default']"
)
@option("--priority", type=Priority(), help="Higher runs first; a number or a level name.")
@option("--delay", type=DELAY, metavar="SECONDS", help="Run no sooner.")
@option("--run-at", type=Timestamp(), help="Run no sooner than this time (with a UTC offset).")
@option(
    "--idempotency-key",
    type=IDEMPOTENCY_KEY,
    metavar="KEY",
    help="While a job holds KEY, return it instead.",
)
@option("--max-attempts", type=MAX_ATTEMPTS, help="Attempts before dead-lettering.")
@option("--timeout", type=TIMEOUT, metavar="SECONDS")
@option(
    "--depends-on",
    "depends_on",
    multiple=True,
    type=JOB_ID,
    metavar="ID",
    help="Wait until job ID succeeded (repeat for several parents).",
)
@option(
    "--on-parent-failure",
    type=click.Choice(["cancel", "run", "dead"]),
    help="When a parent ends dead or cancelled: cancel this job (default), run it anyway, or "
    "dead-letter it.",
)
@app_option
@json_option
@pass_runtime
def enqueue(
    runtime: Runtime,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    queue: str | None,
    priority: int | None,
    delay: float | None,
    run_at: datetime | None,
    idempotency_key: str | None,
    max_attempts: int | None,
    timeout: float | None,
    depends_on: tuple[int, ...],
    on_parent_failure: str | None,
    as_json: bool,
) -> None:
    """Enqueue one job of TASK and print its id.

    With the app (--app, CONVEYOR_APP or conveyor.toml), the job goes to the app's database
    through its registered task: an unknown task or arguments that do not fit its signature
    are refused, and the task's defaults (queue, priority, attempts) apply. Without one, only
    the JSON, the payload size and the options are checked (give the task's defaults as
    options), a task of which the database holds no job is enqueued with a warning, and the
    default database sqlite:///conveyor.db must already exist.
    """
    options: dict[str, Any] = {
        "queue": queue,
        "priority": priority,
        "delay": delay,
        "run_at": run_at,
        "idempotency_key": idempotency_key,
        "max_attempts": max_attempts,
        "timeout": timeout,
        "depends_on": list(depends_on) or None,
        "on_parent_failure": on_parent_failure,
    }
    user_app = runtime.user_app()
    if user_app is not None:
        job = user_app.enqueue(task, args, kwargs, **options)
    else:
        app = runtime.app()
        if not runtime.database_named():
            # A job in a ./conveyor.db that nothing named would wait where no worker looks.
            require_database(app.settings.url)
        new_job = encode_job(
            task,
            args,
            kwargs,
            JobOptions(**options),
            max_payload_bytes=app.settings.max_payload_bytes,
        )
        if not app.list_jobs(task=task, limit=1):
            click.echo(
                f"conveyor: warning: {redact_url(app.settings.url)} holds no job of task "
                f"{task!r} and no app was named to check it: if no worker has a task of that "
                f"name, the job fails (name the app with {APP_HINT})",
                err=True,
            )
        job = app.enqueue_raw([new_job])[0]
    if as_json:
        echo_json(job.to_dict())
    else:
        click.echo(job.id)


# --- jobs ---------------------------------------------------------------------------------


@click.group()
def jobs() -> None:
    """List, show and cancel jobs."""


@jobs.command("list")
@option("--state", multiple=True, type=JOB_STATE, help="Only these states (repeat).")
@option("--queue", help="Only this queue.")
@option("--task", help="Only this task.")
@option("--limit", type=LIMIT, default=100, show_default=True)
@option("--before-id", type=BEFORE_ID, metavar="ID", help="Page: only jobs older than job ID.")
@option(
    "--key",
    type=IDEMPOTENCY_KEY,
    help="Only the jobs holding this idempotency key (live or not).",
)
@app_option
@json_option
@pass_runtime
def list_jobs(
    runtime: Runtime,
    state: Sequence[str],
    queue: str | None,
    task: str | None,
    limit: int,
    before_id: int | None,
    key: str | None,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    found = runtime.existing_app().list_jobs(
        state=list(state) or None,
        queue=queue,
        task=task,
        limit=limit,
        before_id=before_id,
        idempotency_key=key,
    )
    if as_json:
        echo_json([job.to_dict() for job in found])
        return
    if not found:
        click.echo("no jobs")
        return
    click.echo(jobs_table(found))
    if len(found) == limit:
        click.echo(f"(more: add --before-id {found[-1].id})", err=True)


@jobs.command("show")
@click.argument("job_id", type=JOB_ID, metavar="ID")
@app_option
@json_option
@pass_runtime
def show_job(runtime: Runtime, job_id: int, as_json: bool) -> None:
    """Show one job: arguments, attempts, errors and result, its parents and children (what a
    blocked job waits for), and what else holds it if it waits."""
    app = runtime.existing_app()
    job = app.get_job(job_id)
    links = app.dependencies(job_id)
    waiting = breaker_gate(app, job)
    if as_json:
        document = {**job.to_dict(), **links_dict(links)}
        echo_json(document if waiting is None else {**document, "waiting": waiting})
    else:
        click.echo(job_details(job))
        lines = links_lines(job, links)
        if lines:
            click.echo(lines)
        if waiting is not None:
            click.echo(waiting)


@jobs.command("cancel")
@click.argument("job_id", type=JOB_ID, metavar="ID")
@app_option
@json_option
@pass_runtime
def cancel_job(runtime: Runtime, job_id: int, as_json: bool) -> None:
    """Cancel a waiting job now, or ask the worker running it to stop it."""
    job = runtime.existing_app().cancel(job_id)
    if as_json:
        echo_json(job.to_dict())
    elif job.state is JobState.RUNNING:
        click.echo(f"job {job.id} is running: its worker was asked to cancel it")
    else:
        click.echo(f"job {job.id} is {job.state}")


# --- the dead-letter queue ----------------------------------------------------------------


@click.group()
def dlq() -> None:
    """The dead-letter queue: jobs that failed for good. Inspect, requeue or discard them."""


@dlq.command("list")
@option("--queue", help="Only this queue.")
@option("--task", help="Only this task.")
@option("--limit", type=LIMIT, default=100, show_default=True)
@app_option
@json_option
@pass_runtime
def list_dead(
    runtime: Runtime, queue: str | None, task: str | None, limit: int, as_json: bool
) -> None:
    """List dead jobs, newest first, with the reason each one died."""
    found = runtime.existing_app().dead_letters(queue=queue, task=task, limit=limit)
    if as_json:
        echo_json([job.to_dict() for job in found])
    elif not found:
        click.echo("the dead-letter queue is empty")
    else:
        click.echo(dead_table(found))


@dlq.command("show")
@click.argument("job_id", type=JOB_ID, metavar="ID")
@app_option
@json_option
@pass_runtime
def show_dead(runtime: Runtime, job_id: int, as_json: bool) -> None:
    """Show one dead job, with every error and the last traceback."""
    job = runtime.existing_app().get_job(job_id)
    if job.state is not JobState.DEAD:
        raise UserError(f"job {job_id} is not in the dead-letter queue: it is {job.state}")
    links = runtime.existing_app().dependencies(job_id)
    if as_json:
        echo_json({**job.to_dict(), **links_dict(links)})
    else:
        click.echo(job_details(job))
        lines = links_lines(job, links)
        if lines:
            click.echo(lines)


ids_argument = click.argument("job_ids", nargs=-1, type=JOB_ID, metavar="[ID]...")


def all_option(command: str) -> Callable[[FC], FC]:
    return option(
        "--all",
        "every",
        is_flag=True,
        envvar=f"CONVEYOR_DLQ_{command.upper()}_ALL",  # named after the flag, as the others are
        help="Every dead job (of --queue).",
    )


all_queue_option = option("--queue", help="With --all: only this queue.")
yes_option = option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def _chosen(
    app: Conveyor, job_ids: Sequence[int], every: bool, queue: str | None, verb: str, yes: bool
) -> list[int]:
    """The ids named, or with --all every dead job, confirmed."""
    if job_ids and every:
        raise click.UsageError("give job ids or --all, not both")
    if not job_ids and not every:
        raise click.UsageError("give the ids of the jobs, or --all")
    if queue is not None and not every:
        raise click.UsageError("--queue only narrows --all")
    if not every:
        return list(job_ids)
    chosen = _dead_ids(app, queue)
    if chosen:
        where = f" in queue {queue!r}" if queue is not None else ""
        confirm(f"{verb} all {len(chosen)} dead job(s){where}", yes=yes)
    return chosen


def _dead_ids(app: Conveyor, queue: str | None) -> list[int]:
    ids: list[int] = []
    before: int | None = None
    while True:
        page = app.list_jobs(state=JobState.DEAD, queue=queue, limit=PAGE, before_id=before)
        ids += [job.id for job in page]
        if len(page) < PAGE:
            return ids
        before = page[-1].id


@dlq.command("requeue")
@ids_argument
@all_option("requeue")
@all_queue_option
@option("--reset-attempts", is_flag=True, help="Start counting attempts from zero again.")
@option(
    "--revive-children",
    is_flag=True,
    help="Also put back the jobs that these jobs' failure cancelled or dead-lettered (their "
    "dependents, down the graph): they wait for their parents again.",
)
@yes_option
@app_option
@json_option
@pass_runtime
def requeue(
    runtime: Runtime,
    job_ids: tuple[int, ...],
    every: bool,
    queue: str | None,
    reset_attempts: bool,
    revive_children: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Put dead (or cancelled) jobs back in their queue, all or none.

    Without --reset-attempts each job gets one more attempt.
    """
    app = runtime.existing_app()
    chosen = _chosen(app, job_ids, every, queue, "Requeue", yes)
    requeued = (
        app.requeue_many(chosen, reset_attempts=reset_attempts, revive_children=revive_children)
        if chosen
        else []
    )
    if as_json:
        echo_json([job.to_dict() for job in requeued])
    elif not requeued:
        click.echo("no dead jobs")
    else:
        click.echo(jobs_table(requeued))


@dlq.command("discard")
@ids_argument
@all_option("discard")
@all_queue_option
@yes_option
@app_option
@json_option
@pass_runtime
def discard(
    runtime: Runtime,
    job_ids: tuple[int, ...],
    every: bool,
    queue: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Delete dead jobs for good, all or none."""
    app = runtime.existing_app()
    chosen = _chosen(app, job_ids, every, queue, "Discard", yes)
    count = app.discard(chosen) if chosen else 0
    if as_json:
        echo_json({"discarded": count, "ids": chosen})
    else:
        click.echo(f"discarded {count} dead job(s)")


# --- stats --------------------------------------------------------------------------------


@click.command()
@app_option
@json_option
@option(
    "--last-hour",
    is_flag=True,
    help="Instead: per task over the last hour, from what every worker tallied -- runs by "
    "outcome, run time and queue wait (average, p95), retry rate.",
)
@pass_runtime
def stats(runtime: Runtime, as_json: bool, last_hour: bool) -> None:
    """Count jobs per queue and state."""
    if last_hour:
        echo_last_hour(runtime.existing_app(), as_json)
        return
    counts = runtime.existing_app().stats()
    if as_json:
        echo_json(stats_json(counts))
    elif not counts:
        click.echo("no jobs")
    else:
        click.echo(stats_table(counts))
