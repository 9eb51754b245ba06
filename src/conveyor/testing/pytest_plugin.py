"""Pytest fixtures for testing code that uses Conveyor (registered as a pytest plugin by
Conveyor's package metadata: installed, they are there).

- ``conveyor_clock``: a ``conveyor.testing.Clock``, standing still until moved.
- ``conveyor_app``: a new ``Conveyor`` on a SQLite database in the test's temporary folder,
  with that clock; register tasks on it with ``@conveyor_app.task``.
- ``conveyor_use``: ``conveyor_use(app, eager=False)`` points your own app, tasks and all, at
  such a database and that clock for the test, and puts it back afterwards.

``conveyor.testing.drain(app)`` then runs the jobs, retries and scheduled ones included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.app import Conveyor
from conveyor.testing import Clock, temporary_url, use_database


@pytest.fixture
def conveyor_clock() -> Clock:
    """The clock of the test's Conveyor apps: stands still until moved (``drain`` moves it)."""
    return Clock()


@pytest.fixture
def conveyor_app(tmp_path: Path, conveyor_clock: Clock) -> Iterator[Conveyor]:
    """A new Conveyor app on a SQLite database in the test's temporary folder."""
    app = Conveyor(temporary_url(tmp_path), clock=conveyor_clock)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def conveyor_use(tmp_path: Path, conveyor_clock: Clock) -> Iterator[Callable[..., Conveyor]]:
    """``conveyor_use(app, eager=False)``: your own app on the test's database and clock,
    until the test ends."""
    restores: list[Callable[[], None]] = []

    def use(app: Conveyor, *, eager: bool = False) -> Conveyor:
        restores.append(
            use_database(app, temporary_url(tmp_path), clock=conveyor_clock, eager=eager)
        )
        return app

    try:
        yield use
    finally:
        for restore in restores:
            restore()
