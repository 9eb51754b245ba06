"""Escalation rules end to end: the seed's dict, in code and in the configuration file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, JobState
from conveyor.errors import ConfigurationError
from conveyor.testing import Clock, drain
from tests.workflows.tasks import register

SEED = {"aider": {"on_failure": "codex", "on_timeout": "codex", "max_retries": 2}}


def test_the_seeds_rule_escalates_after_two_retries(app: Conveyor) -> None:
    app.escalation(SEED)
    job = app.get_task("aider").enqueue(5)
    drain(app)
    original = app.get_job(job.id)
    assert original.state is JobState.DEAD and original.attempts == 3
    assert original.escalated_to is not None
    assert original.dead_reason is not None
    assert original.dead_reason.startswith(f"escalated to job {original.escalated_to} (codex")
    escalated = app.get_job(original.escalated_to)
    assert (escalated.task, escalated.queue, escalated.state) == (
        "codex",
        "premium",
        JobState.SUCCEEDED,
    )
    assert escalated.escalated_from == job.id
    result = escalated.result
    assert result["did"] == 5
    assert result["escalation"]["job_id"] == job.id
    assert result["escalation"]["attempts"] == 3
    assert result["escalation"]["error"]["message"] == "aider could not do 5"
    assert [j.id for j in app.dead_letters()] == [job.id]


def test_a_named_exception_escalates_at_once(app: Conveyor) -> None:
    app.escalation({"limited": {"on_exception": {"RateLimited": {"task": "codex", "priority": 9}}}})
    job = app.get_task("limited").enqueue(1)
    drain(app)
    original = app.get_job(job.id)
    assert original.attempts == 1 and original.escalated_to is not None
    assert app.get_job(original.escalated_to).priority == 9


def test_a_rule_on_the_decorator(app: Conveyor) -> None:
    @app.task(name="flaky_decorated", max_attempts=1, escalate={"on_failure": "codex"})
    def flaky_decorated(x: int) -> None:
        raise ValueError(x)

    job = flaky_decorated.enqueue(3)
    drain(app)
    assert app.get_job(job.id).escalated_to is not None


def test_an_unknown_target_fails_when_a_worker_starts(app: Conveyor) -> None:
    app.escalation({"aider": {"on_failure": "gpt"}})
    with pytest.raises(ConfigurationError, match="'gpt', which is not a registered task"):
        app.worker()


def test_rules_come_from_the_configuration_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conveyor.toml").write_text(
        f'url = "sqlite:///{tmp_path / "jobs.db"}"\n'
        "[escalation.aider]\n"
        'on_failure = "codex"\n'
        'on_timeout = "codex"\n'
        "max_retries = 2\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    with register(Conveyor(clock=Clock())) as app:
        job = app.get_task("aider").enqueue(1)
        drain(app)
        assert app.get_job(job.id).escalated_to is not None


def test_a_loop_in_the_configuration_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    loop: dict[str, Any] = {"a": {"on_failure": "b"}, "b": {"on_failure": "a"}}
    with pytest.raises(ConfigurationError, match="loop"):
        Conveyor("sqlite:///:memory:", escalation=loop)
