"""The ``conveyor`` command.

Every option has a CONVEYOR_* environment twin, listed in ``--help``. Options that configure a
process (``--url``, ``--app``, ``--json``, ``--debug`` and the worker's) have plain names such as
CONVEYOR_CONCURRENCY; the filters and options of one command carry its name, such as
CONVEYOR_JOBS_LIST_STATE, so that a variable set for one command never changes another.
"""

from __future__ import annotations

import importlib
from dataclasses import fields

import click

from conveyor import __version__
from conveyor.settings import DEFAULT_URL, Settings

from .core import ConveyorGroup, Runtime, option, pass_runtime

#: The module of each command, imported when the command runs (or help lists it): a worker's
#: start imports its own command's module, not those of the tables, snapshots and dashboards.
COMMANDS = {
    "worker": "ops",
    "workers": "workers",
    "enqueue": "jobs",
    "jobs": "jobs",
    "dlq": "jobs",
    "stats": "jobs",
    "queues": "queues",
    "breakers": "breakers",
    "schedules": "schedules",
    "serve": "serve",
    "schema": "ops",
    "demo": "ops",
    "workflows": "workflows",
    "watch": "watch",
    "top": "top",
    "backup": "snapshot",
    "restore": "snapshot",
    "copy": "snapshot",
}

#: Flow control (cli/flow.py) joins the groups it belongs to.
FLOW = {"queues": ("list_gates", "pause", "resume", "quiet", "rate"), "jobs": ("why",)}


class Commands(ConveyorGroup):
    """The root group, whose commands are imported by name when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = importlib.import_module(f"{__name__}.{COMMANDS[cmd_name]}")
            command: click.Command = getattr(module, cmd_name)
            if cmd_name in FLOW and isinstance(command, click.Group):
                flow = importlib.import_module(f"{__name__}.flow")
                for name in FLOW[cmd_name]:
                    command.add_command(getattr(flow, name))
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


_SETTINGS = ", ".join(f"CONVEYOR_{f.name.upper()}" for f in fields(Settings) if f.name != "url")


@click.group(
    "conveyor",
    cls=Commands,
    context_settings={
        "auto_envvar_prefix": "CONVEYOR",
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
    },
    epilog=f"Engine settings come from the environment too: {_SETTINGS}; or from the config "
    "file, under their own names (lease = 60).",
)
@option(
    "--url",
    envvar="CONVEYOR_URL",
    metavar="URL",
    help="Database: sqlite:///path.db or postgresql://user@host/db. Typed here, it wins over "
    "everything, the app's own URL included; from CONVEYOR_URL, it loses to the app's code "
    "(see above).",
)
@option("--debug", is_flag=True, envvar="CONVEYOR_DEBUG", help="Show tracebacks of errors.")
@click.version_option(__version__, "--version", prog_name="conveyor")
@click.pass_context
def cli(ctx: click.Context, url: str | None, debug: bool) -> None:
    """Conveyor: a durable job queue. Run workers, enqueue jobs, inspect and repair queues.

    \b
    Which database, the first that applies:
      1. --url typed on the command line;
      2. the app's (--app, else CONVEYOR_APP, else app in the config file), as its code names it;
      3. CONVEYOR_URL;
      4. url in the config file;
      5. {default}.
    The config file is conveyor.toml in the working directory, else [tool.conveyor] in its
    pyproject.toml; it may also hold any setting. A CONVEYOR_URL or config url that the app's
    code overrides is an error, not ignored.
    """
    runtime = ctx.ensure_object(Runtime)
    runtime.url = url
    runtime.url_from_command_line = (
        ctx.get_parameter_source("url") is click.core.ParameterSource.COMMANDLINE
    )
    runtime.debug = debug


cli.help = (cli.help or "").format(default=DEFAULT_URL)


def main() -> None:
    """The console script."""
    cli.main(prog_name="conveyor")


__all__ = ["cli", "main", "pass_runtime"]

if __name__ == "__main__":
    main()
