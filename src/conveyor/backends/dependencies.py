"""The storage side of dependencies, written once for every SQL engine: generators that yield
(query name, parameters) and receive the rows back, run by each engine inside the transaction
of the operation they belong to (an enqueue, a finish, a cancel, a rescue, a requeue). The
decisions are conveyor.workflows.rules'; the SQL is each dialect's, under the same names.

Parameters that are lists of ids stay Python lists (SQLite binds them as JSON arrays,
PostgreSQL as arrays); ``rows`` is a list of rows, bound as JSON on both.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from conveyor.backends.base import EnqueueResult, NewJob, Outcome
from conveyor.errors import UnknownParent
from conveyor.job import JobState
from conveyor.workflows.rules import batch_order, loaded_policy, on_parents_failed, settle_new_job

T = TypeVar("T")
Sql = Generator[tuple[str, dict[str, Any]], list[Any], T]

_STATES = {state.value: state for state in JobState}


def has_dependencies(jobs: Sequence[NewJob]) -> bool:
    """Whether ``link_new_jobs`` has something to write for ``jobs`` (a trace context too)."""
    return any(
        job.depends_on or job.depends_on_batch or job.workflow_id or job.trace_context
        for job in jobs
    )


def link_new_jobs(
    jobs: Sequence[NewJob], results: Sequence[EnqueueResult], now: float | None
) -> Sql[None]:
    """After the rows of ``jobs`` are inserted (``results``, in the same order): record their
    edges, workflow and trace context, mark their parents, and settle each one's state from
    its parents' -- blocked while some are live, ended at once if a parent failed and its
    policy says so. Raises UnknownParent (the caller's transaction then writes nothing)."""
    workflows: dict[str, list[int]] = {}
    for job, result in zip(jobs, results, strict=True):
        if job.workflow_id is not None and result.created:
            workflows.setdefault(job.workflow_id, []).append(result.job_id)
    for workflow_id, ids in workflows.items():
        yield ("set_workflow", {"workflow_id": workflow_id, "ids": ids})
    traced = [
        [result.job_id, job.trace_context]
        for job, result in zip(jobs, results, strict=True)
        if job.trace_context is not None and result.created
    ]
    if traced:
        yield ("set_trace_contexts", {"rows": traced})
    parents_of: list[list[int]] = [
        [*job.depends_on, *(results[i].job_id for i in job.depends_on_batch)] for job in jobs
    ]
    wanted = sorted({p for i, ps in enumerate(parents_of) if results[i].created for p in ps})
    if not wanted:
        return
    rows = yield ("lock_parents", {"ids": wanted})
    states: dict[int, JobState] = {int(job_id): _STATES[state] for job_id, state in rows}
    missing = [p for p in wanted if p not in states]
    if missing:
        raise UnknownParent(missing)
    settled_rows: list[list[Any]] = []
    edges: list[list[int]] = []
    for i in batch_order([job.depends_on_batch for job in jobs]):
        job, result, parents = jobs[i], results[i], parents_of[i]
        if not parents or not result.created:
            continue
        unique = list(dict.fromkeys(parents))
        policy = loaded_policy(job.on_parent_failure)
        settled = settle_new_job(policy, [(p, states[p]) for p in unique])
        if settled.state is not None:
            result.state = settled.state
        states[result.job_id] = result.state
        settled_rows.append(
            [
                result.job_id,
                None if settled.state is None else settled.state.value,
                settled.pending,
                job.on_parent_failure,
                settled.reason,
                settled.stopped_by,
            ]
        )
        edges.extend([parent, result.job_id] for parent in unique)
    yield ("insert_edges", {"rows": edges})
    yield ("set_dependency_states", {"rows": settled_rows, "now": now})


@dataclass
class Settlement:
    """What a settlement changed besides the parents' own ends."""

    #: Queues that got ready jobs (children unblocked), to wake their workers.
    queues: set[str] = field(default_factory=set)
    #: Children ended by a parent's failure (cancelled or dead), for those awaiting results.
    ended: list[int] = field(default_factory=list)


def settle_ends(
    succeeded: Sequence[int], failed: Mapping[int, JobState | str], now: float | None
) -> Sql[Settlement]:
    """The children of parents that just ended -- ``succeeded`` ids, ``failed`` ids with their
    state (dead or cancelled), all of them with has_children set -- follow their rules, and
    theirs down the graph. Cost: the edges of the parents that ended, and of the descendants
    that a failure ended."""
    settlement = Settlement()
    if succeeded:
        rows = yield ("release_children", {"parents": list(succeeded), "now": now})
        settlement.queues.update(queue for _, queue, state in rows if state == "queued")
    frontier = {int(job_id): JobState(state) for job_id, state in failed.items()}
    while frontier:
        rows = yield ("blocked_children", {"parents": sorted(frontier)})
        decided = on_parents_failed([(int(c), int(p), policy) for c, p, policy in rows], frontier)
        frontier = {}
        if decided.stops:
            stop_rows = [[s.job_id, s.state.value, s.reason, s.parent_id] for s in decided.stops]
            stopped = yield ("stop_children", {"rows": stop_rows, "now": now})
            for job_id, state, has_children in stopped:
                settlement.ended.append(int(job_id))
                if has_children:
                    frontier[int(job_id)] = _STATES[state]
        if decided.ended_parents:
            counts = [
                [i, n, decided.triggered.get(i)] for i, n in sorted(decided.ended_parents.items())
            ]
            rows = yield ("unblock", {"rows": counts, "now": now})
            settlement.queues.update(queue for _, queue, state in rows if state == "queued")
    return settlement


def settle_rows(rows: Sequence[Sequence[Any]], now: float | None) -> Sql[Settlement]:
    """``settle_ends`` for the RETURNING rows (id, state, has_children, ...) of a rescue or
    a cancel: those that ended and have children."""
    succeeded = [int(r[0]) for r in rows if r[2] and r[1] == "succeeded"]
    failed = {int(r[0]): r[1] for r in rows if r[2] and r[1] in ("dead", "cancelled")}
    if not succeeded and not failed:
        return Settlement()
    return (yield from settle_ends(succeeded, failed, now))


def requeue_links(job_id: int, revive_children: bool) -> Sql[list[int]]:
    """A dead or cancelled job requeued: its still-blocked children wait for it again, and with
    ``revive_children`` the descendants its failure ended are blocked again on their parents
    (unless another of their parents failed too). Returns the revived ids."""
    yield ("reblock_children", {"id": job_id})
    revived: list[int] = []
    frontier = [job_id]
    while revive_children and frontier:
        rows = yield ("stopped_children", {"parents": frontier})
        frontier = [int(row[0]) for row in rows]
        if frontier:
            yield ("revive_children", {"ids": frontier})
            revived.extend(frontier)
    return revived


def escalate(outcome: Outcome, now: float | None) -> Sql[str | None]:
    """After ``outcome`` (dead, with ``escalate``) was applied: the new job and the links both
    ways. Returns the new job's queue, or None when the rules say not to (see the query)."""
    target = outcome.escalate
    assert target is not None
    rows = yield (
        "escalate",
        {
            "from": outcome.job_id,
            "task": target.task,
            "queue": target.queue,
            "priority": target.priority,
            "max_attempts": target.max_attempts,
            "timeout": target.timeout,
            "now": now,
        },
    )
    if not rows:
        return None
    link = {"from": outcome.job_id, "to": int(rows[0][0]), "task": target.task, "why": target.why}
    yield ("link_escalation", link)
    return target.queue
