"""`conveyor demo` runs to the end with the expected outcome."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.cli import cli
from tests.cli.support import Invoke, output_json


def outcome(stdout: str) -> dict[str, int]:
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(succeeded|dead|cancelled)\s+(\d+)$", stdout, re.M)
    }


def test_demo_in_a_given_database(invoke: Invoke) -> None:
    result = invoke("demo", "--jobs", "8")
    assert result.exit_code == 0, result.output
    assert outcome(result.stdout) == {"succeeded": 7, "dead": 1, "cancelled": 0}
    assert "both returned job 8" in result.stdout
    assert "dead-letter queue after 3 attempts" in result.stdout
    assert "dlq list" in result.stdout

    counts = output_json(invoke("stats", "--json"))
    assert sum(c["succeeded"] for c in counts.values()) == 7
    assert counts["demo"]["dead"] == 1
    (dead,) = output_json(invoke("dlq", "list", "--json"))
    assert dead["task"] == "conveyor.demo.charge_card"


def test_demo_defaults_to_a_fresh_file_and_ignores_conveyor_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    configured = tmp_path / "production.db"
    result = CliRunner().invoke(
        cli, ["demo", "--jobs", "5"], env={"CONVEYOR_URL": f"sqlite:///{configured}"}
    )
    assert result.exit_code == 0, result.output
    assert outcome(result.stdout)["succeeded"] == 4
    assert not configured.exists()
    (folder,) = tmp_path.glob("conveyor-demo-*")
    assert str(folder / "demo.db") in result.stdout


def test_too_few_jobs_is_a_user_error(invoke: Invoke) -> None:
    result = invoke("demo", "--jobs", "2")
    assert result.exit_code == 2
    assert result.stderr == "conveyor: error: the demo needs at least 5 jobs, got 2\n"
