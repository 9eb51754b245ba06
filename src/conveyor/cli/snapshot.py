"""Backup, restore and copy between engines (conveyor/snapshot/)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from conveyor.snapshot.moves import copy as copy_store
from conveyor.snapshot.records import Summary

from .core import Runtime, app_option, json_option, option, pass_runtime, redact_url
from .output import echo_json


def _report(summary: Summary, done: str, as_json: bool) -> None:
    if as_json:
        echo_json(summary.to_dict())
    else:
        click.echo(f"{done}: {summary.describe()}")


@click.command()
@option(
    "--to",
    "path",
    envvar="CONVEYOR_BACKUP_TO",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The backup file to write (JSON lines; gzip-compressed if it ends in .gz).",
)
@app_option
@json_option
@pass_runtime
def backup(runtime: Runtime, path: Path, as_json: bool) -> None:
    """Write every job (all states, with attempts, errors, results, checkpoints, progress and
    dependencies) and every queue setting, breaker and schedule to FILE: one consistent
    moment, taken while workers run. FILE is replaced only once complete."""
    summary = runtime.existing_app().backup(path)
    _report(summary, f"backed up to {path}", as_json)


@click.command()
@option(
    "--from",
    "path",
    envvar="CONVEYOR_RESTORE_FROM",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file written by `conveyor backup`.",
)
@app_option
@json_option
@pass_runtime
def restore(runtime: Runtime, path: Path, as_json: bool) -> None:
    """Load a backup into the database (of any engine), which must be empty: all or nothing.
    Ids are kept; jobs that were running come back queued."""
    summary = runtime.app().restore(path)
    taken = datetime.fromtimestamp(summary.taken_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    _report(summary, f"restored a {summary.engine} backup of {taken} UTC", as_json)


@click.command("copy")
@option(
    "--from",
    "source",
    envvar="CONVEYOR_COPY_FROM",
    metavar="URL",
    help="The database to copy from.  [default: the app's database, as every command finds it]",
)
@option(
    "--to",
    "target",
    envvar="CONVEYOR_COPY_TO",
    required=True,
    metavar="URL",
    help="The empty database to fill.",
)
@app_option
@json_option
@pass_runtime
def copy(runtime: Runtime, source: str | None, target: str, as_json: bool) -> None:
    """Copy every job and queue setting from one database to an empty one, of any engines
    (e.g. sqlite:///jobs.db to postgresql://host/db), while the source stays online: one
    consistent moment of it, streamed. Jobs that were running arrive queued. Other settings
    (postgres_schema ...) come from the environment and config file, for both sides."""
    if source is None:
        app = runtime.existing_app()
        summary, named = copy_store(app, target), app.settings.url
    else:
        summary, named = copy_store(source, target), source
    _report(summary, f"copied {redact_url(named)} to {redact_url(target)}", as_json)
