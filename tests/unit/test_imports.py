"""What importing Conveyor costs: the public names of ``conveyor`` and ``conveyor.worker`` all
import, yet importing a module of either package imports none of them, so the heartbeat process
every worker starts loads its own few modules and its engine's, not the whole application."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import conveyor
import conveyor.worker
from conveyor.backends import opens_elsewhere

#: Everything the heartbeat process needs before it opens its store. A module added here is
#: imported again at every worker start: the app, tasks, the worker runtime and asyncio are not.
PULSE_MODULES = {
    "conveyor",
    "conveyor.backends",
    "conveyor.backends.base",
    "conveyor.backends.tally",  # the aggregates' records, which the contract names (stdlib only)
    "conveyor.bounds",  # settings check their ranges with it (stdlib only)
    "conveyor.errors",
    "conveyor.job",
    "conveyor.lazy",
    "conveyor.settings",
    "conveyor.worker",
    "conveyor.worker.liveness",
    "conveyor.worker.machine",
    "conveyor.worker.pulse",
    "conveyor.worker.pulse_main",
    "conveyor.worker.pulse_wire",
    "conveyor.worker_info",
}

#: Heavy modules of the worker's runtime (and of the other engine) a heartbeat process never uses.
HEAVY = {"asyncio", "concurrent.futures", "multiprocessing", "psycopg", "psycopg_pool"}


def modules_after(program: str) -> set[str]:
    """The modules a fresh interpreter holds after ``program``, started as the heartbeater
    starts its heartbeat process (``-P``)."""
    listing = "import json, sys; print(json.dumps(sorted(sys.modules)))"
    found = subprocess.run(
        [sys.executable, "-P", "-c", f"{program}\n{listing}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(found.stdout))


def test_the_heartbeat_process_imports_its_own_modules_and_nothing_of_the_runtime() -> None:
    modules = modules_after("import conveyor.worker.pulse_main")
    assert {name for name in modules if name.startswith("conveyor")} == PULSE_MODULES
    assert not modules & HEAVY


def test_a_heartbeat_process_on_sqlite_imports_no_other_engine_and_no_asyncio(
    tmp_path: Path,
) -> None:
    """As ``pulse.serve`` opens its store; the sqlite3 module stands for the engine itself."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    modules = modules_after(
        "import conveyor.worker.pulse_main\n"
        "from conveyor.backends import open_backend\n"
        "from conveyor.settings import Settings\n"
        f"open_backend(Settings(url={url!r})).close()"
    )
    assert "sqlite3" in modules
    assert "conveyor.backends.sqlite" in modules
    assert not {name for name in modules if name.startswith("conveyor.backends.postgres")}
    assert "conveyor.app" not in modules
    assert not modules & HEAVY


def test_a_heartbeat_process_told_its_engine_imports_that_engine_alone() -> None:
    """What a heartbeat process launched before its worker opens the store imports while it
    waits for its configuration (heartbeater.launch)."""
    modules = modules_after(
        "import conveyor.worker.pulse_main\n"
        "from conveyor.backends import import_engine\n"
        "import_engine('sqlite')"
    )
    assert "conveyor.backends.sqlite" in modules
    assert not {name for name in modules if name.startswith("conveyor.backends.postgres")}
    assert not modules & HEAVY


@pytest.mark.parametrize(
    ("url", "shared"),
    [
        ("postgresql://postgres@127.0.0.1/jobs", True),
        ("redis://127.0.0.1:6379/0", True),
        ("sqlite:///jobs.db", True),
        ("sqlite:///:memory:", False),
    ],
)
def test_whether_other_processes_can_open_a_store_is_told_from_its_url(
    url: str, shared: bool
) -> None:
    assert opens_elsewhere(url) is shared


@pytest.mark.parametrize("package", [conveyor, conveyor.worker], ids=lambda p: p.__name__)
def test_every_public_name_imports(package: ModuleType) -> None:
    """By attribute and by ``import *``, and it shows in dir()."""
    star: dict[str, object] = {}
    exec(f"from {package.__name__} import *", star)
    for name in package.__all__:
        value = getattr(package, name)
        assert star[name] is value
        assert name in dir(package)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Conveyr'"):
        # mypy refuses it too: were the package's __getattr__ visible to type checkers, they
        # would accept any name, and this ignore, unused, would fail mypy.
        _ = conveyor.Conveyr  # type: ignore[attr-defined]
    with pytest.raises(ImportError, match="cannot import name 'Poll'"):
        exec("from conveyor.worker import Poll", {})


def test_the_worker_command_imports_no_other_command() -> None:
    """``conveyor worker`` starts without the modules of the tables, snapshots and dashboards
    of the other commands (nor the archive codecs they bring)."""
    modules = modules_after(
        "import click\n"
        "from conveyor.cli import cli\n"
        "assert cli.get_command(click.Context(cli), 'worker') is not None"
    )
    commands = {name for name in modules if name.startswith("conveyor.cli.")}
    assert commands == {"conveyor.cli.core", "conveyor.cli.ops", "conveyor.cli.params"}
    assert not modules & {"bz2", "lzma", "shutil", "tempfile", "conveyor.snapshot"}
