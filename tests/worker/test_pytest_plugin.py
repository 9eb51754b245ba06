"""The pytest plugin, as a user meets it: pytest run on test files of their own, in a folder
of their own, finds the conveyor_* fixtures through the package's entry point. One of the
files is the example of the README's "Testing your tasks", run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

USER_TESTS = """
import pytest

from conveyor import JobState
from conveyor.testing import Clock, drain


def test_fixtures(conveyor_app, conveyor_clock, tmp_path):
    assert isinstance(conveyor_clock, Clock)
    assert str(tmp_path) in conveyor_app.settings.url
    later = conveyor_app.task(lambda: "done", name="later")
    job = later.options(delay=600).enqueue()
    start = conveyor_clock()
    assert drain(conveyor_app).advanced == 600
    assert conveyor_clock() == start + 600
    assert job.wait(timeout=0) == "done"


def test_each_test_has_a_database_of_its_own(conveyor_app):
    assert conveyor_app.list_jobs() == []
"""


def readme_example() -> str:
    """The README's example test: the Python block that starts with ``# test_billing.py``."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    [example] = [block for block in blocks if block.startswith("# test_billing.py")]
    return str(example)


def run_pytest(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_plugin_gives_user_tests_their_fixtures(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TESTS, encoding="utf-8")
    (tmp_path / "test_billing.py").write_text(readme_example(), encoding="utf-8")
    run = run_pytest(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5 passed" in run.stdout, run.stdout
    # conveyor_use put the app back: the URL it names in code was never opened.
    assert not (tmp_path / "billing.db").exists()
