"""Fixtures for the HTTP tests: a real database of each engine, an app with tasks on it, and
a client that calls the ASGI application in process (the error cases); test_server.py runs
the real server process."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from tests.engines import Engine, engine
from tests.support import enabled_backends

# Starlette's TestClient asks for another HTTP client package; httpx is the one it runs on.
warnings.filterwarnings("ignore", message=".*httpx.*")

from starlette.testclient import TestClient  # noqa: E402


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CONVEYOR_"):
            monkeypatch.delenv(name)


@pytest.fixture(params=enabled_backends())
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with engine(request.param, tmp_path) as found:
        yield found


def register_tasks(app: Conveyor) -> None:
    @app.task(name="add", queue="math", max_attempts=1)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="explode", max_attempts=1)
    def explode(reason: str = "boom") -> None:
        raise RuntimeError(reason)


@pytest.fixture
def app(database: Engine) -> Iterator[Conveyor]:
    """The user's app: tasks registered, so the API checks arguments against them."""
    with database.app() as found:
        register_tasks(found)
        yield found


@pytest.fixture
def bare_app(database: Engine) -> Iterator[Conveyor]:
    """No tasks known: what ``conveyor serve`` without --app serves."""
    with database.app() as found:
        yield found


@pytest.fixture
def client(app: Conveyor) -> Iterator[TestClient]:
    with TestClient(app.asgi(tokens_from_environment=False)) as found:
        yield found


@pytest.fixture
def bare_client(bare_app: Conveyor) -> Iterator[TestClient]:
    with TestClient(bare_app.asgi(tokens_from_environment=False)) as found:
        yield found
