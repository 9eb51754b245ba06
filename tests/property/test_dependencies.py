"""Random graphs of dependent jobs with random outcomes, driven through the Backend interface
on every engine: every job ends in exactly one terminal state, no job runs before its parents
ended as its policy requires, and nothing stays blocked once all its parents have ended."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.backends.base import Backend, Outcome, OutcomeKind
from conveyor.job import JobState
from tests.support import FACTORIES, FakeClock, enabled_backends, new_job

POLICIES = (None, "run", "dead")
FAILED = (JobState.DEAD, JobState.CANCELLED)


@dataclass
class Node:
    parents: list[int]
    policy: str | None
    #: What a run of it does: succeed, or die.
    succeeds: bool
    #: Cancelled by an operator while it waits, when the loop comes to it.
    cancelled: bool


@st.composite
def graphs(draw: st.DrawFn, most: int) -> list[Node]:
    size = draw(st.integers(1, most))
    nodes: list[Node] = []
    for i in range(size):
        parents = draw(st.lists(st.integers(0, i - 1), max_size=4, unique=True)) if i else []
        nodes.append(
            Node(
                parents=parents,
                policy=draw(st.sampled_from(POLICIES)),
                succeeds=draw(st.integers(0, 9)) > 1,
                cancelled=draw(st.integers(0, 19)) == 0,
            )
        )
    return nodes


def run_graph(backend: Backend, nodes: list[Node], batches: int) -> None:
    # Enqueue in a few batches: parents in an earlier batch are named by id, in the same batch
    # by position.
    ids: list[int] = []
    cut = max(1, len(nodes) // batches)
    for start in range(0, len(nodes), cut):
        chunk = range(start, min(len(nodes), start + cut))
        jobs = [
            new_job(
                depends_on=tuple(ids[p] for p in nodes[i].parents if p < start),
                depends_on_batch=tuple(p - start for p in nodes[i].parents if p >= start),
                on_parent_failure=nodes[i].policy,
            )
            for i in chunk
        ]
        ids += [r.job_id for r in backend.enqueue_many(jobs)]
    index = {job_id: i for i, job_id in enumerate(ids)}
    ran: set[int] = set()
    for _ in range(10 * len(nodes) + 10):
        for i, node in enumerate(nodes):
            # Read just before: an earlier cancel of this loop may have ended it already.
            if node.cancelled and backend.get(ids[i]).state in (JobState.BLOCKED, JobState.QUEUED):
                backend.cancel(ids[i])
                node.cancelled = False
        runs = backend.claim("w", None, 7, 30.0)
        if not runs:
            break
        for run in runs:
            i = index[run.id]
            assert i not in ran, f"job {i} ran twice"
            ran.add(i)
            states = [backend.get(ids[p]).state for p in nodes[i].parents]
            if nodes[i].policy == "run":
                assert all(s.is_terminal for s in states), (i, states)
            else:
                assert all(s is JobState.SUCCEEDED for s in states), (i, states)
        backend.finish_many(
            [
                Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED, result_json="1")
                if nodes[index[r.id]].succeeds
                else Outcome(r.id, r.lease_token, OutcomeKind.DEAD, dead_reason="drawn")
                for r in runs
            ]
        )
    final = {j.id: j for j in backend.list_jobs(limit=100_000)}
    for i, node in enumerate(nodes):
        job = final[ids[i]]
        parents = [final[ids[p]].state for p in node.parents]
        assert job.state.is_terminal, f"job {i} stayed {job.state} with parents {parents}"
        if i in ran:
            assert job.state is (JobState.SUCCEEDED if node.succeeds else JobState.DEAD)
            continue
        # Never ran: cancelled by the operator, or ended by a parent's failure as its policy says.
        if job.stopped_by is not None:
            assert final[job.stopped_by].state in FAILED
            expected = JobState.DEAD if node.policy == "dead" else JobState.CANCELLED
            assert job.state is expected
            assert node.policy != "run"
        else:
            assert job.state is JobState.CANCELLED


@pytest.mark.parametrize("engine", enabled_backends())
def test_random_graphs_end_correctly(engine: str) -> None:
    most, examples = (250, 40) if engine == "sqlite" else (100, 8)

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(nodes=graphs(most), batches=st.integers(1, 4))
    def check(nodes: list[Node], batches: int) -> None:
        with (
            tempfile.TemporaryDirectory() as folder,
            FACTORIES[engine](Path(folder), FakeClock(), {}) as backend,
        ):
            run_graph(backend, nodes, batches)

    check()
