"""psycopg imported without ``importlib.metadata``.

psycopg, psycopg_binary and psycopg_pool each look their own version up in their distribution's
metadata as they are imported (their ``version`` modules call ``importlib.metadata.version``).
That imports ``importlib.metadata`` with email, zipfile and csv, and scans the folders of
sys.path three times: about a tenth of a PostgreSQL worker's start (bench/w5_startup.py).

The installed versions are also in the names of the ``<package>-<version>.dist-info`` folders
beside the packages, which one listing of their folder reads: each package's ``version`` module is
given its version from there before psycopg is imported. A package whose folder does not show
exactly one such entry (an unusual install) looks its version up itself, as without this module.
"""

from __future__ import annotations

import os
import re
import sys
from importlib.machinery import PathFinder
from types import ModuleType

PACKAGES = ("psycopg", "psycopg_binary", "psycopg_pool")

DIST_INFO = re.compile(r"(psycopg(?:_binary|_pool)?)-([^-]+)\.dist-info")


def preset() -> None:
    """Give each package's ``version`` module its version, if psycopg is not imported yet."""
    if "psycopg" in sys.modules:
        return
    spec = PathFinder.find_spec("psycopg")
    if spec is None or not spec.submodule_search_locations:
        return
    folder = os.path.dirname(next(iter(spec.submodule_search_locations)))
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    found: dict[str, list[str]] = {}
    for entry in entries:
        match = DIST_INFO.fullmatch(entry)
        if match:
            found.setdefault(match[1], []).append(match[2])
    for package in PACKAGES:
        versions = found.get(package, [])
        name = f"{package}.version"
        if len(versions) != 1 or package not in entries or name in sys.modules:
            continue
        module = ModuleType(name, f"{package}'s version, read from its dist-info folder's name.")
        module.__version__ = versions[0]  # type: ignore[attr-defined]
        sys.modules[name] = module


preset()
