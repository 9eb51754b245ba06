"""The command line of workflows: --depends-on, jobs show, workflows show|cancel, and
dlq requeue --revive-children."""

from __future__ import annotations

from conveyor import Conveyor, JobState, chain
from conveyor.backends.base import Outcome, OutcomeKind
from tests.cli.support import Invoke, assert_user_error, output_json


def enqueue_id(invoke: Invoke, *args: str) -> int:
    result = invoke("enqueue", *args)
    assert result.exit_code == 0, result.output
    return int(result.stdout.strip())


def test_depends_on_blocks_the_job_and_jobs_show_says_on_what(invoke: Invoke) -> None:
    first = enqueue_id(invoke, "etl.extract")
    second = enqueue_id(invoke, "etl.extract")
    child = enqueue_id(invoke, "etl.load", "--depends-on", str(first), "--depends-on", str(second))
    job = output_json(invoke("jobs", "show", str(child), "--json"))
    assert job["state"] == "blocked" and job["pending_parents"] == 2
    assert job["parents"] == [
        {"id": first, "state": "queued"},
        {"id": second, "state": "queued"},
    ]
    text = invoke("jobs", "show", str(child)).stdout
    assert f"blocked: waiting for 2 parent(s) to end: {first}, {second}" in text
    assert f"children: {child} (blocked)" in invoke("jobs", "show", str(first)).stdout


def test_an_unknown_parent_is_one_line_and_exit_2(invoke: Invoke) -> None:
    enqueue_id(invoke, "etl.extract")
    assert_user_error(invoke("enqueue", "etl.extract", "--depends-on", "999"), "999", "not exist")


def test_workflows_show_and_cancel(invoke: Invoke, url: str) -> None:
    with Conveyor(url) as app:
        step = app.task(name="etl.step")(lambda: None)
        flow = chain(step.job(), step.job(), step.job()).enqueue(app, workflow_id="w1")
    shown = output_json(invoke("workflows", "show", "w1", "--json"))
    assert shown["state"] == "running"
    assert [j["state"] for j in shown["jobs"]] == ["queued", "blocked", "blocked"]
    assert "workflow w1: running (2 blocked, 1 queued)" in invoke("workflows", "show", "w1").stdout
    cancelled = output_json(invoke("workflows", "cancel", "w1", "--json"))
    assert cancelled["counts"] == {"cancelled": 3} and cancelled["state"] == "failed"
    assert [j["id"] for j in cancelled["jobs"]] == [j.id for j in flow.jobs]
    assert_user_error(invoke("workflows", "show", "nope"), "no workflow")


def test_dlq_requeue_revives_the_children(invoke: Invoke, url: str) -> None:
    with Conveyor(url) as app:
        parent_id = enqueue_id(invoke, "etl.extract", "--max-attempts", "1")
        child = enqueue_id(invoke, "etl.load", "--depends-on", str(parent_id))
        run = app.backend.claim("w", None, 1, 30.0)[0]
        app.backend.finish_many([Outcome(run.id, run.lease_token, OutcomeKind.DEAD)])
        assert app.get_job(child).state is JobState.CANCELLED
    result = invoke("dlq", "requeue", str(parent_id), "--revive-children")
    assert result.exit_code == 0, result.output
    with Conveyor(url) as app:
        assert app.get_job(child).state is JobState.BLOCKED
