"""Backup and copy: what ``Conveyor.backup``, ``conveyor.copy`` and the CLI call. Each streams
records from one engine's snapshot to a file or into another engine, so that memory stays flat
however many jobs move."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.backends import engine_of, open_backend
from conveyor.errors import ConfigurationError
from conveyor.settings import Settings
from conveyor.snapshot.files import write_snapshot
from conveyor.snapshot.records import Record, Summary

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.backends.base import Backend


def backup(backend: Backend, path: str | os.PathLike[str]) -> Summary:
    """Write a consistent snapshot of ``backend`` to the file ``path`` (JSON lines, gzip if it
    ends in .gz), replacing it once complete."""
    records = backend.export_snapshot()
    try:
        return write_snapshot(records, path)
    finally:
        _close(records)


def copy_between(source: Backend, target: Backend) -> Summary:
    """Stream a consistent snapshot of ``source`` into the empty ``target``."""
    records = source.export_snapshot()
    try:
        return target.import_snapshot(records)
    finally:
        _close(records)


def copy(source: str | Conveyor, target: str | Conveyor) -> Summary:
    """Move every job and queue setting from one database to another, of any engines, while
    the source stays online: ``copy("sqlite:///jobs.db", "postgresql://db/jobs")``. Each side
    is a URL (other settings, such as postgres_schema, from the environment and config file as
    for ``Conveyor(url)``) or an app, whose settings are used. The target must be empty; it is
    created or migrated as an app would. Running jobs arrive waiting, counted in the summary's
    ``running``."""
    with ExitStack() as stack:
        reader = _open(source, existing=True)
        stack.callback(reader.close)
        writer = _open(target, existing=False)
        stack.callback(writer.close)
        return copy_between(reader, writer)


def _open(store: str | Conveyor, *, existing: bool) -> Backend:
    settings = Settings.load(url=store) if isinstance(store, str) else store.settings
    if existing and engine_of(settings.url) == "sqlite":
        from conveyor.backends.sqlite.connection import path_from_url

        path = path_from_url(settings.url)
        if path == ":memory:" or not Path(path).is_file():
            raise ConfigurationError(f"no database at {path} to copy from")
    return open_backend(settings)


def _close(records: Iterator[Record]) -> None:
    """End the engine's read transaction now, not whenever the iterator is collected."""
    close = getattr(records, "close", None)
    if close is not None:
        close()
