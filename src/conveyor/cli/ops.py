"""Commands that run things: worker, schema, demo."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
from collections.abc import Iterator

import click

from conveyor.backends.script import schema_script
from conveyor.bounds import MAX_PROCESSES
from conveyor.errors import SchemaError
from conveyor.jsonlog import FORMATS, WorkerIdFilter, formatter, log_each_run
from conveyor.worker.pools import Concurrency, format_concurrency, format_pool_spec
from conveyor.worker.supervisor import Supervisor

from .core import (
    APP_HINT,
    Runtime,
    UserError,
    app_option,
    echo_json,
    json_option,
    option,
    pass_runtime,
    redact_url,
)
from .params import ConcurrencyRange, QueueSpec

log = logging.getLogger("conveyor.cli")

LOG_LEVELS = ("debug", "info", "warning", "error")


@click.command()
@app_option
@option(
    "--queues",
    type=QueueSpec(),
    envvar="CONVEYOR_QUEUES",
    metavar="A,B|A=N,B=MIN-MAX",
    help="Queues to work on, comma separated, sharing --concurrency; or each with its own "
    "concurrency (a pool per queue), e.g. emails=10,reports=1-4.  [default: every queue]",
)
@option(
    "--concurrency",
    type=ConcurrencyRange(),
    default="10",
    show_default=True,
    envvar="CONVEYOR_CONCURRENCY",
    help="Jobs run at once; MIN-MAX scales between the two with the queue's depth.",
)
@option(
    "--prefetch",
    type=click.IntRange(min=0),
    default=None,
    envvar="CONVEYOR_PREFETCH",
    help="Jobs claimed ahead of a free slot.  [default: while jobs take under 20 ms on "
    "average, what the slots get through in about 20 ms; 0 for none]",
)
@option(
    "--burst",
    is_flag=True,
    envvar="CONVEYOR_BURST",
    help="Exit once no job is ready instead of waiting for more. Jobs held by a gate that "
    "opens by itself are waited for (a rate limit's next start, a pause with an end, quiet "
    "hours, a cap that runs elsewhere hold, a circuit breaker's cool-down and probe); jobs "
    "left to a person (a pause until resumed, a breaker opened by hand) or due later "
    "(scheduled, retries in backoff) are left behind.",
)
@option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    envvar="CONVEYOR_GRACE",
    metavar="SECONDS",
    help="On SIGINT/SIGTERM, how long running jobs may finish before they are put back.",
)
@option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    envvar="CONVEYOR_LOG_LEVEL",
)
@option(
    "--log-format",
    type=click.Choice(FORMATS, case_sensitive=False),
    default="text",
    show_default=True,
    envvar="CONVEYOR_LOG_FORMAT",
    help="text for people; json for one JSON object per line (time, level, logger, message, "
    "and fields such as job_id and worker_id).",
)
@option(
    "--processes",
    type=click.IntRange(min=1, max=MAX_PROCESSES),
    default=None,
    envvar="CONVEYOR_PROCESSES",
    metavar="N",
    help="Run N worker processes, each with these options, under a supervisor that restarts "
    "one that dies (1 too).  [default: one worker in this process, not supervised; for a "
    "service manager that restarts it]",
)
# How the supervisor starts each of its workers: in the child process, never supervised again.
@click.option("--supervised", is_flag=True, hidden=True, allow_from_autoenv=False)
@pass_runtime
def worker(
    runtime: Runtime,
    queues: list[str] | dict[str, Concurrency] | None,
    concurrency: Concurrency,
    prefetch: int | None,
    burst: bool,
    grace: float,
    log_level: str,
    log_format: str,
    processes: int | None,
    supervised: bool,
) -> None:
    """Run a worker: claim jobs and run them.

    It runs until SIGINT/SIGTERM (a second signal exits at once), or with --burst until no job
    is ready: a burst waits for jobs that gates hold only until they open by themselves (rate
    limits, timed pauses, quiet hours, caps, a breaker's cool-down), and leaves those held by a
    pause until resumed or a breaker opened by hand, and jobs due later. Logs go to stderr
    (unless the app configured logging itself), as text or as JSON lines.
    """
    app = runtime.user_app()  # with --processes too: a bad --app fails once, here
    named = runtime.app_source()
    if app is None or named is None:
        raise UserError(f"no app to run: name it with {APP_HINT}")
    app_spec = named[0]
    if processes is not None and not supervised:
        # Each child runs this command with --supervised; the supervisor restarts it if it dies.
        argv = [sys.executable, "-m", "conveyor.cli"]
        argv += ["--url", runtime.url] if runtime.url_from_command_line and runtime.url else []
        argv += ["--debug"] if runtime.debug else []
        argv += ["worker", "--app", app_spec, "--concurrency", format_concurrency(concurrency)]
        argv += ["--grace", repr(grace), "--log-level", log_level, "--log-format", log_format]
        argv += ["--supervised"]
        argv += ["--queues", format_pool_spec(queues)] if queues else []
        argv += ["--burst"] if burst else []
        argv += ["--prefetch", str(prefetch)] if prefetch is not None else []
        with _stderr_logging(log_level.upper(), log_format.lower()):
            code = Supervisor(argv, processes).run()
        click.get_current_context().exit(code)
    runner = app.worker(
        queues=queues, concurrency=concurrency, prefetch=prefetch, burst=burst, grace=grace
    )
    if log_level.lower() == "debug":
        log_each_run(app)
    with _stderr_logging(log_level.upper(), log_format.lower(), runner.id):
        log.info(
            "conveyor worker: app %s (%d tasks) on %s",
            app_spec,
            len(app.tasks),
            redact_url(app.settings.url),
        )
        runner.run()
        counts = ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(runner.counters).items())
        log.info("worker stopped: %s", counts)


@contextlib.contextmanager
def _stderr_logging(level: str, log_format: str, worker_id: str | None = None) -> Iterator[None]:
    """Log to stderr for the life of the worker, unless the app configured logging itself."""
    root = logging.getLogger()
    handler: logging.Handler | None = None
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter(log_format))
        if worker_id is not None:
            handler.addFilter(WorkerIdFilter(worker_id))
        root.addHandler(handler)
    previous = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(previous)
        if handler is not None:
            root.removeHandler(handler)


# --- schema -------------------------------------------------------------------------------


@click.group()
def schema() -> None:
    """Create, upgrade and check the database schema."""


@schema.command("migrate")
@app_option
@json_option
@pass_runtime
def migrate(runtime: Runtime, as_json: bool) -> None:
    """Apply pending migrations (creating the database if needed)."""
    backend = runtime.schema_backend(existing=False)
    applied = backend.migrate()
    status = backend.verify_schema()
    if as_json:
        echo_json({"applied": applied, "version": status.current, "latest": status.latest})
    elif applied:
        click.echo(f"applied migration(s) {', '.join(map(str, applied))}")
        click.echo(f"schema version {status.current}")
    else:
        click.echo(f"schema version {status.current} (latest {status.latest}): up to date")


@schema.command("verify")
@app_option
@json_option
@pass_runtime
def verify(runtime: Runtime, as_json: bool) -> None:
    """Check the schema against the migrations; exit 1 and list the problems if it differs."""
    version: int | None = None
    latest: int | None = None
    try:
        status = runtime.schema_backend(existing=True).verify_schema()
        version, latest, problems = status.current, status.latest, status.problems
        ok = status.ok
    except SchemaError as exc:  # a schema this Conveyor cannot open is a finding, not a crash
        ok, problems = False, [str(exc)]
    if as_json:
        echo_json({"ok": ok, "version": version, "latest": latest, "problems": problems})
    elif ok:
        click.echo(f"schema OK (version {version})")
    else:
        if version is not None and version != latest:
            click.echo(f"schema version {version}, latest {latest}")
        for problem in problems:
            click.echo(f"problem: {problem}")
    if not ok:
        click.get_current_context().exit(1)


@schema.command("sql")
@option(
    "--schema",
    "--postgres-schema",
    "postgres_schema",
    envvar="CONVEYOR_POSTGRES_SCHEMA",
    metavar="NAME",
    help="PostgreSQL schema the tables go in (ignored for SQLite).  [default: conveyor]",
)
@option(
    "--from",
    "from_version",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    envvar="CONVEYOR_SCHEMA_SQL_FROM",
    metavar="VERSION",
    help="Print only the migrations after this schema version (the one `schema verify` "
    "reports); 0 is an empty database.",
)
@app_option
@pass_runtime
def sql(runtime: Runtime, postgres_schema: str | None, from_version: int) -> None:
    """Print the DDL without connecting, for a DBA to review and apply.

    Every migration in order, with the bookkeeping `schema migrate` does around them, as one
    transaction. The database (--url, the app's, ...) only picks the engine: PostgreSQL (apply
    with psql -v ON_ERROR_STOP=1 -f FILE) or SQLite (apply with sqlite3 FILE.db < FILE).
    """
    settings = runtime.app().settings
    if postgres_schema is not None:
        settings = settings.replace(postgres_schema=postgres_schema)
    click.echo(schema_script(settings, from_version), nl=False)


# --- demo ---------------------------------------------------------------------------------


@click.command()
@option(
    "--jobs",
    type=click.IntRange(min=1, max=10_000),
    default=40,
    show_default=True,
    help="How many jobs to run.",
)
@option(
    "--url",
    metavar="URL",
    help="Database to run in.  [default: a new SQLite file in a temporary directory; "
    "CONVEYOR_URL is ignored so that the demo never writes into a real queue by accident]",
)
@pass_runtime
def demo(runtime: Runtime, jobs: int, url: str | None) -> None:
    """Tour Conveyor in a few seconds, no server needed.

    Jobs that succeed, run async, wait, retry, and one that ends in the dead-letter queue, run
    by a worker in the background; then the commands to look at what happened.
    """
    # Imported here: the demo module builds its app from CONVEYOR_* at import, and a bad
    # variable must be reported like any other mistake, not break `conveyor --help`.
    from conveyor import demo as tour

    if url is None and runtime.url_from_command_line:
        url = runtime.url
    if not tour.run(jobs, url):
        click.get_current_context().exit(1)
