"""Helpers shared by the CLI tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from click.testing import Result

#: ``invoke("stats", "--json")`` runs ``conveyor --url <the test's database> stats --json``.
Invoke = Callable[..., Result]
#: ``write_app()`` writes an app module into the working directory and returns its name.
WriteApp = Callable[..., str]

APP_SOURCE = """
from conveyor import Conveyor

app = Conveyor()

@app.task(queue="math", max_attempts=1)
def add(x: int, y: int) -> int:
    return x + y

@app.task(queue="math", max_attempts=1)
def explode(reason: str = "boom") -> None:
    raise RuntimeError(reason)
"""


def assert_user_error(result: Result, *fragments: str) -> str:
    """Exit 2, exactly one line on stderr, nothing on stdout, no traceback anywhere."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("conveyor: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def output_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
