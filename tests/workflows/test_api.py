"""Dependencies and composition through the app, run with conveyor.testing.drain."""

from __future__ import annotations

import pytest

from conveyor import Conveyor, Job, JobState, chain, chord, group
from conveyor.errors import (
    ConfigurationError,
    DependencyCycle,
    DependencyError,
    UnknownParent,
    WorkflowNotFound,
)
from conveyor.testing import drain


def test_depends_on_takes_jobs_ids_and_specs_of_the_batch(app: Conveyor) -> None:
    value, add = app.get_task("value"), app.get_task("add_parents")
    first = value.enqueue(1)
    second = value.job(2)
    child = add.options(depends_on=[first, second]).job()
    by_id = add.options(depends_on=[first.id]).job(plus=100)
    jobs = app.enqueue_many([child, second, by_id])
    assert [j.state for j in jobs] == [JobState.BLOCKED, JobState.QUEUED, JobState.BLOCKED]
    drain(app)
    assert app.get_job(jobs[0].id).result == 3
    assert app.get_job(jobs[2].id).result == 101


def test_bad_dependencies_are_typed_errors_and_write_nothing(app: Conveyor) -> None:
    value = app.get_task("value")
    a = value.job(1)
    b = value.options(depends_on=[a]).job(2)
    a.options = value.options(depends_on=[b]).job(1).options
    with pytest.raises(DependencyCycle):
        app.enqueue_many([a, b])
    with pytest.raises(UnknownParent):
        value.options(depends_on=[424242]).enqueue(1)
    with pytest.raises(DependencyError):
        value.options(depends_on=[value.job(1)]).enqueue(1)
    with pytest.raises(ConfigurationError):
        value.options(depends_on=["7"]).enqueue(1)
    with pytest.raises(ConfigurationError):
        value.options(on_parent_failure="ignore").enqueue(1)
    assert app.list_jobs() == []


def test_enqueue_by_name_takes_depends_on(app: Conveyor) -> None:
    parent = app.enqueue("value", [5])
    child = app.enqueue("add_parents", depends_on=[parent.id])
    assert child.state is JobState.BLOCKED
    drain(app)
    assert app.result(child.id) == 5


def test_parent_results_reach_a_child_in_its_own_process(app: Conveyor) -> None:
    parents = [app.get_task("value").enqueue(n) for n in (1, 2, 3)]
    child = app.get_task("add_in_process").options(depends_on=parents).enqueue()
    drain(app)
    assert app.result(child.id) == 6


def test_run_policy_sees_which_parents_failed(app: Conveyor) -> None:
    good, bad = app.get_task("value").enqueue(7), app.get_task("fail").enqueue()
    child = app.get_task("report").options(depends_on=[good, bad], on_parent_failure="run")
    job = child.enqueue()
    drain(app)
    assert app.result(job.id) == {
        "states": {str(good.id): "succeeded", str(bad.id): "dead"},
        "results": {str(good.id): 7},
    }


def test_requeue_revives_the_children_a_failure_cancelled(app: Conveyor) -> None:
    bad = app.get_task("fail").enqueue()
    child = app.get_task("add_parents").options(depends_on=[bad]).enqueue()
    drain(app)
    assert app.get_job(child.id).state is JobState.CANCELLED
    assert app.get_job(child.id).dead_reason == f"parent job {bad.id} ended dead"
    app.requeue(bad.id, revive_children=True)
    assert app.get_job(child.id).state is JobState.BLOCKED


def test_a_chain_passes_results_down(app: Conveyor) -> None:
    value, add = app.get_task("value"), app.get_task("add_parents")
    workflow = chain(value.job(1), add.job(plus=10), add.job(plus=100)).enqueue(app)
    assert [j.state for j in workflow.jobs] == [JobState.QUEUED, JobState.BLOCKED, JobState.BLOCKED]
    drain(app)
    assert app.result(workflow.last[0]) == 111
    assert app.workflow(workflow.id).state == "succeeded"


def test_a_chord_fans_in_and_nests(app: Conveyor) -> None:
    value, add = app.get_task("value"), app.get_task("add_parents")
    inner = chain(value.job(3), add.job(plus=1))
    workflow = app.enqueue_workflow(
        chord(group(value.job(1), value.job(2), inner), add.job()), workflow_id="nightly"
    )
    assert workflow.id == "nightly" and len(workflow.jobs) == 5
    drain(app)
    assert app.result(workflow.last[0]) == 1 + 2 + 4
    assert [j.workflow_id for j in app.workflow("nightly").jobs] == ["nightly"] * 5


def test_a_failed_step_cancels_what_follows(app: Conveyor) -> None:
    value = app.get_task("value")
    workflow = chain(value.job(1), app.get_task("fail").job(), group(value.job(2), value.job(3)))
    enqueued = workflow.enqueue(app)
    drain(app)
    seen = app.workflow(enqueued.id)
    assert [j.state for j in seen.jobs] == [
        JobState.SUCCEEDED,
        JobState.DEAD,
        JobState.CANCELLED,
        JobState.CANCELLED,
    ]
    assert seen.state == "failed"


def test_cancel_workflow_cancels_what_has_not_ended(app: Conveyor) -> None:
    value = app.get_task("value")
    workflow = chain(value.job(1), value.job(2), value.job(3)).enqueue(app)
    first = app.backend.claim("w", None, 1, 30.0)[0]
    assert first.id == workflow.jobs[0].id
    cancelled = app.cancel_workflow(workflow.id)
    assert [j.state for j in cancelled.jobs] == [
        JobState.RUNNING,
        JobState.CANCELLED,
        JobState.CANCELLED,
    ]
    assert cancelled.jobs[0].cancel_requested
    with pytest.raises(WorkflowNotFound):
        app.workflow("nope")


def test_compositions_are_checked(app: Conveyor) -> None:
    with pytest.raises(ConfigurationError):
        chain()
    with pytest.raises(ConfigurationError):
        group(app.get_task("value"))  # type: ignore[arg-type]


def test_on_success_and_on_failure_of_a_job(app: Conveyor) -> None:
    report = app.get_task("report")
    good = app.get_task("value").options(
        on_success=report.job(), on_failure=app.get_task("report").job()
    )
    bad = app.get_task("fail").options(on_success=report.job(), on_failure=report.job())
    first, second = good.enqueue(4), bad.enqueue()
    drain(app)
    by_parent: dict[int, list[Job]] = {}
    for job in app.list_jobs(task="report"):
        [(parent, _, _)] = app.dependencies(job.id).parents
        by_parent.setdefault(parent, []).append(job)
    assert sorted((j.state, j.dead_reason or "") for j in by_parent[first.id]) == [
        (JobState.CANCELLED, "not needed: every parent succeeded"),
        (JobState.SUCCEEDED, ""),
    ]
    states = sorted(j.state for j in by_parent[second.id])
    assert states == [JobState.CANCELLED, JobState.SUCCEEDED]
    ran = next(j for j in by_parent[second.id] if j.state is JobState.SUCCEEDED)
    assert ran.result == {"states": {str(second.id): "dead"}, "results": {}}


def test_workflow_callbacks_run_once_the_whole_workflow_ended(app: Conveyor) -> None:
    value, report = app.get_task("value"), app.get_task("report")
    fine = app.enqueue_workflow(
        group(value.job(1), value.job(2)), on_success=report.job(), on_failure=report.job()
    )
    broken = app.enqueue_workflow(
        chain(value.job(1), group(app.get_task("fail").job(), value.job(2))),
        on_success=report.job(),
        on_failure=report.job(),
    )
    drain(app)
    fine_jobs = app.workflow(fine.id).jobs
    assert [j.state for j in fine_jobs[-2:]] == [JobState.SUCCEEDED, JobState.CANCELLED]
    assert fine_jobs[-2].result["results"] == {str(fine_jobs[0].id): 1, str(fine_jobs[1].id): 2}
    broken_jobs = app.workflow(broken.id).jobs
    assert [j.state for j in broken_jobs[-2:]] == [JobState.CANCELLED, JobState.SUCCEEDED]
    assert set(broken_jobs[-1].result["states"].values()) == {"dead", "succeeded"}
