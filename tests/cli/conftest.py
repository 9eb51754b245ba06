"""Fixtures for the CLI tests: a database URL in tmp_path, an invoker that runs `conveyor` in
process, and app modules written to a temporary working directory (imported like a user's)."""

from __future__ import annotations

import secrets
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from conveyor import Conveyor
from conveyor.cli import cli
from tests.cli.support import APP_SOURCE, Invoke, WriteApp


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own CONVEYOR_* variables must not steer the tests.
    import os

    for name in list(os.environ):
        if name.startswith("CONVEYOR_"):
            monkeypatch.delenv(name)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
def invoke(url: str) -> Invoke:
    """``invoke("stats", "--json")`` runs ``conveyor --url <tmp db> stats --json``."""

    def run(
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        url: str = url,
    ) -> Result:
        return CliRunner().invoke(
            cli, ["--url", url, *args], input=input, env=env, catch_exceptions=False
        )

    return run


@pytest.fixture
def migrated(invoke: Invoke) -> None:
    result = invoke("schema", "migrate")
    assert result.exit_code == 0, result.output


@pytest.fixture
def write_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteApp]:
    """Write an app module into a fresh working directory; returns its importable name."""
    workdir = tmp_path / "project"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    # The CLI puts the working directory on sys.path; keep that from leaking into other tests.
    monkeypatch.setattr(sys, "path", list(sys.path))
    written: list[str] = []

    def write(source: str = APP_SOURCE) -> str:
        name = f"cli_app_{secrets.token_hex(4)}"
        (workdir / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        module = sys.modules.pop(name, None)
        app = getattr(module, "app", None)
        if isinstance(app, Conveyor):
            app.close()
