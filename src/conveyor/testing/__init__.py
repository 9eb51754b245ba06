"""Helpers for testing code that uses Conveyor: a clock that moves when told, ``drain`` (run
every job that is ready, retries and scheduled jobs included, in this process), eager mode
(``Conveyor(url, eager=True)``: every enqueue runs what it made ready at once), and a pytest
plugin (``conveyor.testing.pytest_plugin``, loaded by pytest once Conveyor is installed) with
fixtures for an app on a temporary database.

Jobs run through the worker's own executor and retry rules (see ``runner.py``), and their
outcomes are written to the database like a worker's.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigurationError
from conveyor.job import JobState
from conveyor.testing.runner import runner_for

if TYPE_CHECKING:
    from conveyor.app import Conveyor


class Clock:
    """A clock for ``Conveyor(url, clock=Clock())``: it stands still until moved, so a test
    decides when delays and retry backoffs run out (``drain`` moves it as far as needed).

    ``Clock()`` starts at the current time, ``Clock(start)`` at UNIX time ``start``.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def __repr__(self) -> str:
        return f"<Clock {self._now:.3f}>"

    def advance(self, seconds: float) -> float:
        """Move forward ``seconds`` (>= 0); returns the new time."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ConfigurationError(f"a clock moves forward only, got {seconds} seconds")
        with self._lock:
            self._now += seconds
            return self._now

    def advance_to(self, when: float) -> float:
        """Move forward to UNIX time ``when``, if it is later; returns the new time."""
        with self._lock:
            self._now = max(self._now, float(when))
            return self._now


@dataclass
class DrainSummary:
    """What ``drain`` did: runs and how they ended, how far it moved the clock, and how many
    jobs are still live (waiting for a time the clock could not be moved to, or left when
    ``max_runs`` ran out)."""

    runs: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    cancelled: int = 0
    #: Seconds the app's clock was moved forward.
    advanced: float = 0.0
    #: Jobs still live afterwards (blocked, scheduled, queued, running or retrying).
    left: int = 0


_COUNTED = {
    JobState.SUCCEEDED: "succeeded",
    JobState.RETRYING: "retried",
    JobState.DEAD: "dead",
    JobState.CANCELLED: "cancelled",
}


def drain(
    app: Conveyor, *, queues: Sequence[str] | None = None, max_runs: int = 10_000
) -> DrainSummary:
    """Run every ready job of ``app`` (of ``queues``, or all) in this process, one at a time,
    until none is left; jobs that the runs enqueue run too.

    When the app's clock is a ``Clock``, jobs due later — delayed ones, retries waiting out
    their backoff — run as well: the clock is moved to the next one due, without sleeping,
    until no job is waiting. With another clock they are left waiting (``left``). Stops after
    ``max_runs`` runs (a task that enqueues itself forever).
    """
    if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1:
        raise ConfigurationError(f"max_runs must be an integer >= 1, got {max_runs!r}")
    clock = app._clock
    backend = app.backend
    runner = runner_for(app)
    summary = DrainSummary()
    while summary.runs < max_runs:
        for result in runner.run_ready(queues, max_runs - summary.runs):
            summary.runs += 1
            if result.applied and result.state in _COUNTED:
                name = _COUNTED[result.state]
                setattr(summary, name, getattr(summary, name) + 1)
        if summary.runs >= max_runs or not isinstance(clock, Clock):
            break
        due = backend.next_due()
        if due is None:
            break
        before = clock()
        if due > before:
            summary.advanced += clock.advance_to(due) - before
        elif not backend.promote_due():
            break  # due, yet nothing to promote: only jobs of queues not drained
    summary.left = sum(
        count
        for counts in backend.stats().values()
        for state, count in counts.items()
        if JobState(state).is_live
    )
    return summary


def use_database(
    app: Conveyor, url: str, *, clock: Callable[[], float] | None = None, eager: bool = False
) -> Callable[[], None]:
    """Point ``app`` (your own, with its tasks registered) at the database ``url``, with
    ``clock`` and ``eager``; returns the function that puts back what it had. Its open
    connections are closed either way. The pytest fixture ``conveyor_use`` calls it."""
    saved: dict[str, Any] = {
        "settings": app.settings,
        "_clock": app._clock,
        "_pool": app._pool,
        "eager": app.eager,
    }
    app.configure(url=url)
    app._clock = clock
    app.eager = eager

    def restore() -> None:
        app.close()
        runner_for(app).close()
        for name, value in saved.items():
            setattr(app, name, value)

    return restore


def temporary_url(folder: Path) -> str:
    """A SQLite URL of a new database file in ``folder``."""
    return f"sqlite:///{Path(folder).resolve() / 'conveyor-test.db'}"


__all__ = ["Clock", "DrainSummary", "drain", "temporary_url", "use_database"]
