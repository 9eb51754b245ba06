"""Loads named queries from ``.sql`` files.

A file holds queries separated by header lines of the form ``-- name: claim``; the text up to
the next header is the query. Every dialect uses the same names, so drift is easy to diff.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

_HEADER = re.compile(r"^--\s*name:\s*([a-z0-9_]+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    parts = _HEADER.split(text)
    # parts: [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip().rstrip(";").strip()
    return queries


def _folder(package: str) -> Traversable:
    """The files of ``package``, found through its parent: importing an engine's package would
    import its driver (psycopg), which reading its SQL does not need (`conveyor schema sql`).
    A package installed as files (always, with pip) is read from its folder: importlib.resources
    costs every worker start a few milliseconds of imports, and is only the fallback."""
    parent, _, name = package.rpartition(".")
    spec = import_module(parent or package).__spec__
    origin = None if spec is None else spec.origin
    if origin is not None and Path(origin).is_file():
        folder = Path(origin).parent
        return folder / name if parent else folder
    from importlib import resources

    return resources.files(parent).joinpath(name) if parent else resources.files(package)


@cache
def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    text = _folder(package).joinpath(filename).read_text(encoding="utf-8")
    return parse_queries(text)


def load_migrations(package: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) for every ``NNNN_name.sql`` file in ``package``/migrations."""
    folder = _folder(package).joinpath("migrations")
    found: list[tuple[int, str, str]] = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.sql", entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations of {package} are not numbered 1..n: {versions}")
    return found
