"""The pure rules of dependencies: what becomes of a job when its parents end. The backends
carry the decisions out, in the transaction that writes the parent's end (or the child's
enqueue); nothing here touches storage.

A child waits in ``blocked`` while ``pending_parents`` (its parents not yet ended) is above
zero. A parent that succeeds takes one off the count. A parent that ends ``dead`` or
``cancelled`` applies the child's policy (``on_parent_failure``):

- ``cancel`` (the default): the child ends ``cancelled``, naming the parent; its own children
  follow by the same rules, down the graph.
- ``dead``: the child ends ``dead`` with that reason, so that it can be requeued (or revived
  with its parent, ``requeue(..., revive_children=True)``) once the cause is fixed.
- ``run``: the failed parent counts as ended like a success: the child runs once every parent
  ended, and reads which parents failed (``ctx.parent_states``).
- ``run_only`` (a failure callback, ``on_failure=``): like ``run``, but the child runs only if
  some parent failed; once every parent succeeded it ends ``cancelled`` ("not needed").
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from conveyor.errors import ConfigurationError, DependencyCycle
from conveyor.job import JobState

_FAILED = frozenset({JobState.DEAD, JobState.CANCELLED})


class ParentFailure(enum.StrEnum):
    CANCEL = "cancel"
    RUN = "run"
    DEAD = "dead"
    RUN_ONLY = "run_only"


def parent_failure_policy(value: str | ParentFailure) -> ParentFailure:
    try:
        return ParentFailure(value)
    except ValueError:
        raise ConfigurationError(
            f"on_parent_failure must be 'cancel', 'run', 'dead' or 'run_only', got {value!r}"
        ) from None


def stored_policy(policy: ParentFailure) -> str | None:
    """The column's value: NULL for the default, so that most rows store nothing."""
    return None if policy is ParentFailure.CANCEL else policy.value


def loaded_policy(value: str | None) -> ParentFailure:
    return ParentFailure.CANCEL if value is None else ParentFailure(value)


#: Why a failure callback ended cancelled (the same text in the release queries).
NOT_NEEDED = "not needed: every parent succeeded"


def failure_reason(parent_id: int, state: JobState | str) -> str:
    return f"parent job {parent_id} ended {JobState(state).value}"


def batch_order(parents: Sequence[Sequence[int]]) -> list[int]:
    """The positions of a batch, parents before children. ``parents[i]`` are the positions of
    job i's parents within the batch. Raises DependencyCycle (naming a cycle) if there is none."""
    order: list[int] = []
    # 0: not seen, 1: on the current path, 2: done. Iterative: a chain may be thousands long.
    mark = [0] * len(parents)
    for root in range(len(parents)):
        if mark[root]:
            continue
        path: list[int] = [root]
        edges = [iter(parents[root])]
        mark[root] = 1
        while path:
            step = next(edges[-1], None)
            if step is None:
                mark[path[-1]] = 2
                order.append(path.pop())
                edges.pop()
                continue
            if mark[step] == 1:
                raise DependencyCycle([*path[path.index(step) :], step])
            if mark[step] == 0:
                mark[step] = 1
                path.append(step)
                edges.append(iter(parents[step]))
    return order


@dataclass(slots=True)
class Settled:
    """A new job's state once its parents are known. ``state`` None: as inserted (every parent
    succeeded already, or ended in a way its policy runs after)."""

    state: JobState | None
    pending: int
    reason: str | None = None
    stopped_by: int | None = None


def settle_new_job(policy: ParentFailure, parents: Sequence[tuple[int, JobState]]) -> Settled:
    """A job enqueued after ``parents`` (id, current state)."""
    runs_anyway = policy in (ParentFailure.RUN, ParentFailure.RUN_ONLY)
    failed = None
    for parent_id, state in parents:
        if state in _FAILED and not runs_anyway:
            stopped = JobState.CANCELLED if policy is ParentFailure.CANCEL else JobState.DEAD
            return Settled(stopped, 0, failure_reason(parent_id, state), parent_id)
        if state in _FAILED and failed is None:
            failed = parent_id
    pending = sum(1 for _, state in parents if not state.is_terminal)
    if policy is not ParentFailure.RUN_ONLY:
        return Settled(JobState.BLOCKED if pending else None, pending)
    if not pending and failed is None:
        return Settled(JobState.CANCELLED, 0, NOT_NEEDED)
    return Settled(JobState.BLOCKED if pending else None, pending, None, failed)


@dataclass(slots=True)
class Stop:
    job_id: int
    state: JobState
    reason: str
    parent_id: int


@dataclass(slots=True)
class ParentFailures:
    #: Children ended by a parent's failure.
    stops: list[Stop]
    #: Children that run anyway: job id -> how many of their parents ended here.
    ended_parents: dict[int, int]
    #: Failure callbacks among them: job id -> a parent that failed (what makes it run).
    triggered: dict[int, int]


def on_parents_failed(
    children: Sequence[tuple[int, int, str | None]], failed: Mapping[int, JobState]
) -> ParentFailures:
    """``children``: (child id, parent id, stored policy) of the blocked children of the
    parents in ``failed`` (parent id -> dead or cancelled)."""
    stops: dict[int, Stop] = {}
    ended: dict[int, int] = {}
    triggered: dict[int, int] = {}
    for child_id, parent_id, stored in children:
        policy = loaded_policy(stored)
        if policy in (ParentFailure.RUN, ParentFailure.RUN_ONLY):
            ended[child_id] = ended.get(child_id, 0) + 1
            if policy is ParentFailure.RUN_ONLY:
                triggered.setdefault(child_id, parent_id)
        elif child_id not in stops:
            state = JobState.CANCELLED if policy is ParentFailure.CANCEL else JobState.DEAD
            reason = failure_reason(parent_id, failed[parent_id])
            stops[child_id] = Stop(child_id, state, reason, parent_id)
    return ParentFailures(list(stops.values()), ended, triggered)
