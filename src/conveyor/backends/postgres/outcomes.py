"""finish_many on PostgreSQL: one fenced UPDATE ... FROM unnest(...) per kind of outcome, never
a round trip per job, with retry budgets spent in the same transaction. It sends no NOTIFY:
what it returns tells the caller which to have the notifier send once it has committed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.backends.base import FinishResult, Outcome, OutcomeKind
from conveyor.backends.dependencies import Settlement, escalate, settle_ends
from conveyor.backends.postgres.array_literal import int_array, text_array
from conveyor.backends.postgres.connection import Cursor, Q
from conveyor.backends.postgres.deps import run_sql
from conveyor.backends.postgres.stats import tally_ends
from conveyor.job import TERMINAL_STATES, JobState

#: Outcomes after which the job is ready again (at once or later): other workers should look.
_WAKING = (OutcomeKind.RETRY, OutcomeKind.RELEASED)

#: A dict lookup per returned row rather than an Enum call.
_STATES = {state.value: state for state in JobState}

Run = tuple[int, str]  # (job id, lease token): one run of one job


@dataclass
class Finished:
    results: list[FinishResult]
    #: Queues that got jobs back (retries, releases, children unblocked): their workers to be
    #: woken.
    queues: set[str] = field(default_factory=set)
    #: Whether some job ended (succeeded, dead, cancelled; children a parent's failure ended
    #: included): those waiting on results to be told.
    ended: bool = False


def finish_outcomes(
    cur: Cursor, outcomes: Sequence[Outcome], now: float | None, channel: str
) -> Finished:
    """Apply the outcomes. Successes settle their children in their own statement (NOTIFYing
    ``channel`` for the queues that get ready jobs: only a batch with children pays that, in its
    transaction); failures settle theirs here, in the same transaction."""
    # A run can be finished once: a repeated (id, token) in the batch is never applied.
    firsts: dict[Run, Outcome] = {}
    for outcome in outcomes:
        firsts.setdefault((outcome.job_id, outcome.token), outcome)
    batch = _spend_retry_budgets(cur, list(firsts.values()), now)
    # Successes tally in their own statement (finish_succeeded); the others here, ahead.
    tally_ends(cur, batch, now)

    ended: dict[Run, JobState] = {}
    queues: set[str] = set()
    failed: dict[int, str] = {}
    for kind in OutcomeKind:
        group = [o for o in batch if o.kind is kind]
        if not group:
            continue
        params: dict[str, Any] = {"now": now, **_params(kind, group)}
        if kind is OutcomeKind.SUCCEEDED:
            params["channel"] = channel
        rows = cur.execute(Q[f"finish_{kind.value}"], params).fetchall()
        for job_id, token, queue, state, has_children in rows:
            ended[(int(job_id), token)] = _STATES[state]
            if kind in _WAKING:
                queues.add(queue)
            if has_children and state in ("dead", "cancelled"):
                failed[int(job_id)] = state
        if kind is OutcomeKind.DEAD:
            applied = {int(row[0]) for row in rows}
            for outcome in group:
                if outcome.escalate is not None and outcome.job_id in applied:
                    queue = run_sql(cur, escalate(outcome, now))
                    if queue is not None:
                        queues.add(queue)

    settlement = Settlement()
    if failed:
        settlement = run_sql(cur, settle_ends((), failed, now))
        queues |= settlement.queues

    results: list[FinishResult] = []
    for outcome in outcomes:
        run = (outcome.job_id, outcome.token)
        if run in ended and firsts[run] is outcome:
            results.append(FinishResult(outcome.job_id, True, ended[run]))
        else:
            results.append(FinishResult(outcome.job_id, False))
    # A release that met a cancel request ended its job too (finish_released).
    ended_any = any(state in TERMINAL_STATES for state in ended.values())
    return Finished(results, queues, ended_any or bool(settlement.ended))


def _spend_retry_budgets(cur: Cursor, outcomes: list[Outcome], now: float | None) -> list[Outcome]:
    """Retries beyond their task's budget become dead. Only runs this batch still owns spend
    budget; they are locked until commit so they cannot change hands meanwhile."""
    budgeted = [o for o in outcomes if o.kind is OutcomeKind.RETRY and o.retry_budget]
    if not budgeted:
        return outcomes
    rows = cur.execute(
        Q["owns_runs"],
        {"ids": [o.job_id for o in budgeted], "tokens": [o.token for o in budgeted]},
    ).fetchall()
    owned = {(int(job_id), token) for job_id, token in rows}
    by_task: dict[str, list[Outcome]] = {}
    for outcome in budgeted:
        if (outcome.job_id, outcome.token) in owned:
            assert outcome.retry_budget is not None
            by_task.setdefault(outcome.retry_budget[0], []).append(outcome)

    converted: dict[Run, Outcome] = {}
    for task, group in by_task.items():
        assert group[0].retry_budget is not None
        _, limit, window = group[0].retry_budget
        cur.execute(Q["budget_open_window"], {"task": task, "now": now, "window": window})
        row = cur.execute(
            Q["budget_take"], {"task": task, "wanted": len(group), "limit": limit}
        ).fetchone()
        granted = max(0, int(row[0])) if row else 0
        for outcome in group[granted:]:
            converted[(outcome.job_id, outcome.token)] = replace(
                outcome,
                kind=OutcomeKind.DEAD,
                dead_reason=f"retry budget exhausted: more than {limit} retries of {task} "
                f"within {window:g}s",
            )
    return [converted.get((o.job_id, o.token), o) for o in outcomes]


def _params(kind: OutcomeKind, group: list[Outcome]) -> dict[str, Any]:
    # The arrays every kind sends, and the results, as literals (see array_literal.py).
    params: dict[str, Any] = {
        "ids": int_array([o.job_id for o in group]),
        "tokens": text_array([o.token for o in group]),
    }
    if kind is OutcomeKind.SUCCEEDED:
        params["results"] = text_array([o.result_json for o in group])
        return params
    params["checkpoints"] = [o.checkpoint_json for o in group]
    if kind is OutcomeKind.RELEASED:
        return params
    params["errors"] = [None if o.error is None else json.dumps(o.error.to_dict()) for o in group]
    if kind is OutcomeKind.RETRY:
        params["retry_in"] = [float(o.retry_in) for o in group]
    elif kind is OutcomeKind.DEAD:
        params["reasons"] = [o.dead_reason for o in group]
    return params
