"""The worker runtime.

Its public names are imported on first use (see conveyor/lazy.py): the heartbeat process
imports a few modules of this package and none of the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor import lazy

if TYPE_CHECKING:
    from conveyor.worker.context import JobContext
    from conveyor.worker.pools import Pool
    from conveyor.worker.worker import Worker

__all__ = ["JobContext", "Pool", "Worker"]

#: The module each public name comes from.
_SOURCES = {
    "JobContext": "conveyor.worker.context",
    "Pool": "conveyor.worker.pools",
    "Worker": "conveyor.worker.worker",
}

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy.exports(globals(), _SOURCES)
