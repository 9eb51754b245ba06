"""Every option has a CONVEYOR_* twin, shown in --help, and the twin really works."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from conveyor.cli import cli
from tests.cli.support import Invoke, output_json

ESCAPES = {"help", "version"}


def commands(
    command: click.Command, ctx: click.Context
) -> Iterator[tuple[click.Command, click.Context]]:
    yield command, ctx
    if isinstance(command, click.Group):
        # Asked by name: the root group imports its commands' modules when first asked for.
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            yield from commands(sub, click.Context(sub, info_name=name, parent=ctx))


ALL = list(commands(cli, click.Context(cli, info_name="conveyor", auto_envvar_prefix="CONVEYOR")))


@pytest.mark.parametrize(("command", "ctx"), ALL, ids=[ctx.command_path for _, ctx in ALL])
def test_every_option_shows_its_environment_twin(
    command: click.Command, ctx: click.Context
) -> None:
    """Named after the flag: CONVEYOR_<FLAG> for process-wide options (URL, app, worker), else
    CONVEYOR_<COMMAND PATH>_<FLAG>."""
    options = [
        p
        for p in command.params
        if isinstance(p, click.Option) and p.name not in ESCAPES and not p.hidden
    ]
    for opt in options:
        flag = max(opt.opts, key=len).lstrip("-").replace("-", "_").upper()
        names = {f"CONVEYOR_{flag}", f"{ctx.auto_envvar_prefix}_{flag}"}
        record = opt.get_help_record(ctx)
        assert record is not None
        shown = re.search(r"env var: (\w+)", record[1])
        assert shown is not None, (ctx.command_path, record)
        assert shown[1] in names, (ctx.command_path, record)


def test_worker_help_names_the_twins() -> None:
    result = CliRunner().invoke(cli, ["worker", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for name in ("CONVEYOR_APP", "CONVEYOR_CONCURRENCY", "CONVEYOR_QUEUES", "CONVEYOR_BURST"):
        assert f"env var: {name}" in result.stdout


def test_command_specific_twins_work(invoke: Invoke) -> None:
    for _ in range(3):
        invoke("enqueue", "t")
    listed = invoke("jobs", "list", env={"CONVEYOR_JSON": "1", "CONVEYOR_JOBS_LIST_LIMIT": "2"})
    assert len(output_json(listed)) == 2
    # A filter set for one command leaves the others alone.
    assert (
        len(output_json(invoke("jobs", "list", "--json", env={"CONVEYOR_DLQ_LIST_LIMIT": "1"})))
        == 3
    )


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("conveyor, version ")
