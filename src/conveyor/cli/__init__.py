"""The ``conveyor`` command.

Every option has a CONVEYOR_* environment twin, listed in ``--help``. Options that configure a
process (``--url``, ``--app``, ``--json``, ``--debug`` and the worker's) have plain names such as
CONVEYOR_CONCURRENCY; the filters and options of one command carry its name, such as
CONVEYOR_JOBS_LIST_STATE, so that a variable set for one command never changes another.
"""

from __future__ import annotations

from dataclasses import fields

import click

from conveyor import __version__
from conveyor.settings import DEFAULT_URL, Settings

from .core import ConveyorGroup, Runtime, option, pass_runtime
from .jobs import dlq, enqueue, jobs, stats
from .ops import demo, schema, worker
from .queues import queues
from .workers import workers

_SETTINGS = ", ".join(f"CONVEYOR_{f.name.upper()}" for f in fields(Settings) if f.name != "url")


@click.group(
    "conveyor",
    cls=ConveyorGroup,
    context_settings={
        "auto_envvar_prefix": "CONVEYOR",
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
    },
    epilog=f"Engine settings come from the environment too: {_SETTINGS}.",
)
@option(
    "--url",
    envvar="CONVEYOR_URL",
    metavar="URL",
    show_default=DEFAULT_URL,
    help="Database: sqlite:///path.db or postgresql://user@host/db. With --app, a --url typed "
    "on the command line replaces the app's own.",
)
@option("--debug", is_flag=True, envvar="CONVEYOR_DEBUG", help="Show tracebacks of errors.")
@click.version_option(__version__, "--version", prog_name="conveyor")
@click.pass_context
def cli(ctx: click.Context, url: str | None, debug: bool) -> None:
    """Conveyor: a durable job queue. Run workers, enqueue jobs, inspect and repair queues."""
    runtime = ctx.ensure_object(Runtime)
    runtime.url = url
    runtime.url_from_command_line = (
        ctx.get_parameter_source("url") is click.core.ParameterSource.COMMANDLINE
    )
    runtime.debug = debug


for command in (worker, workers, enqueue, jobs, dlq, stats, queues, schema, demo):
    cli.add_command(command)


def main() -> None:
    """The console script."""
    cli.main(prog_name="conveyor")


__all__ = ["cli", "main", "pass_runtime"]

if __name__ == "__main__":
    main()
