from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.backends.base import Backend
from tests.support import FACTORIES, FakeClock, enabled_backends

#: Tests that scripts/test keeps on one pytest-xdist worker, one after another, when it runs the
#: suite on several (CONVEYOR_TEST_WORKERS=2, with --dist loadgroup): the fault tests, whose bounds
#: allow for a loaded machine but not for two of them loading it at once, and a module whose
#: fixture loads a big table once.
XDIST_GROUPS = {
    "tests/chaos/": "faults",
    "tests/postgres/test_connection_loss.py": "faults",
    "tests/postgres/test_hosts.py": "faults",
    "tests/postgres/test_scale.py": "faults",
    "tests/postgres/test_shutdown_outage.py": "faults",
    "tests/postgres/test_explain.py": "explain",
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """--dist loadgroup, with the groups above. (Marking the tests with xdist_group does not
    group them under pytest 9.2: pytest-xdist 3.8 renames the tests' ids, which no longer works.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    scheduler = LoadGroupScheduling(config, log)
    by_mark = scheduler._split_scope

    def split_scope(nodeid: str) -> str:
        for prefix, group in XDIST_GROUPS.items():
            if nodeid.startswith(prefix):
                return group
        return str(by_mark(nodeid))

    scheduler._split_scope = split_scope
    return scheduler


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=enabled_backends())
def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Backend]:
    """A fresh, empty backend of each enabled engine, driven by the fake clock."""
    with FACTORIES[request.param](tmp_path, clock, {}) as engine:
        yield engine
