"""Public names of a package imported on first use (PEP 562).

Importing any module of a package runs the package's ``__init__`` first. The heartbeat process
every worker starts (worker/pulse.py) imports a few modules of ``conveyor`` and
``conveyor.worker``; were their ``__init__`` to import every public name, it would pay for the
whole application -- the app, its task machinery, the worker runtime, asyncio -- at each start.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping


def exports(
    namespace: MutableMapping[str, object], sources: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__``, for the names of ``sources`` (name: the
    module it comes from) and the package's ``namespace`` (its ``globals()``).

    Define them under ``if not TYPE_CHECKING`` and import the names under ``if TYPE_CHECKING``:
    a type checker that saw a module ``__getattr__`` would accept any name, a misspelt one too.
    """
    package = namespace["__name__"]

    def getattr_(name: str) -> object:
        source = sources.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        namespace[name] = value  # later look-ups find it without a call
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *sources})

    return getattr_, dir_
