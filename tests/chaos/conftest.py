"""Fixtures of the fault tests: a per-test world, worker and helper subprocesses that are always
killed in teardown, a small tmpfs that is always unmounted, and the stderr of every process
attached to the report of a failed test."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.chaos.helpers import Helpers, mount_tmpfs, unmount

# The world and its workers are the worker tests' own fixtures, reused as they are.
from tests.worker.conftest import WORKERS_KEY, workers, world

__all__ = ["WORKERS_KEY", "workers", "world"]

HELPERS_KEY = pytest.StashKey[Helpers]()


@pytest.fixture
def helpers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Helpers]:
    manager = Helpers(tmp_path)
    request.node.stash[HELPERS_KEY] = manager
    try:
        yield manager
    finally:
        manager.cleanup()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test only (skipped where mounting is not permitted)."""
    where = tmp_path / "small"
    where.mkdir()
    reason = mount_tmpfs(where, "2m")
    if reason is not None:
        pytest.skip(reason)
    try:
        yield where
    finally:
        unmount(where)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the stderr of every worker and helper process to the report of a failed test."""
    report = yield
    if report.when == "call" and report.failed:
        manager = item.stash.get(WORKERS_KEY, None)
        for proc in manager.procs if manager is not None else []:
            report.sections.append(
                (f"worker {proc.name} (pid {proc.pid}) stderr", proc.log() or "(empty)")
            )
        helpers = item.stash.get(HELPERS_KEY, None)
        for helper in helpers.procs if helpers is not None else []:
            report.sections.append(
                (f"helper {helper.name} (pid {helper.pid}) stderr", helper.log() or "(empty)")
            )
    return report
