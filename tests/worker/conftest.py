from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.worker.harness import Workers, World, make_world
from tests.worker.sample_app import EFFECTS_ENV

WORKERS_KEY = pytest.StashKey[Workers]()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    w = make_world(tmp_path)
    # In-process workers run the sample tasks here too: they record into this test's effects.
    monkeypatch.setenv(EFFECTS_ENV, str(w.effects_path))
    try:
        yield w
    finally:
        w.app.close()


@pytest.fixture
def workers(world: World, request: pytest.FixtureRequest) -> Iterator[Workers]:
    manager = Workers(world)
    request.node.stash[WORKERS_KEY] = manager
    try:
        yield manager
    finally:
        manager.cleanup()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach every worker's stderr to the report of a failed test."""
    report = yield
    manager = item.stash.get(WORKERS_KEY, None)
    if manager is not None and report.when == "call" and report.failed:
        for proc in manager.procs:
            report.sections.append(
                (f"worker {proc.name} (pid {proc.pid}) stderr", proc.log() or "(empty)")
            )
    return report
