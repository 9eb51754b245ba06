"""Circuit breakers carried out inside the engines' transactions, the same way on every engine.

An engine gives a ``BreakerStore`` bound to its open transaction; these functions apply the
rules of ``conveyor.limits.breakers`` through it: in the claim (which tasks to skip, and the one
probe of a breaker whose cool-down is over) and in ``finish_many`` (failures counted with the
outcomes that report them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from conveyor.backends.base import Outcome
from conveyor.limits.breakers import (
    HALF_OPEN,
    OPEN,
    Breaker,
    BreakerRow,
    gate,
    probe_started,
    record,
)

Row = tuple[Any, ...]
#: Claims one job of the given rate-limited tasks, if a bucket's token and the gates allow.
RateProbe = Callable[[Sequence[str]], Row | None]


class BreakerStore(Protocol):
    """The breaker operations of one engine, inside one open transaction."""

    def unsettled(self) -> list[BreakerRow]:
        """The breakers that are not closed."""

    def lock(self, names: Sequence[str], *, wait: bool) -> list[BreakerRow]:
        """The rows of ``names``, locked until the transaction ends; without ``wait``, the
        rows another transaction holds are left out."""

    def ensure(self, breakers: Sequence[Breaker], now: float) -> None:
        """Create the missing rows (closed), so that ``lock`` finds rows to lock: two
        transactions counting the first failures of a breaker must take turns."""

    def save(self, row: BreakerRow, now: float) -> None: ...

    def probe_running(self, job_id: int, token: str) -> bool: ...

    def claim_probe(
        self, tasks: Sequence[str], queues: Sequence[str] | None, capped: Sequence[str]
    ) -> Row | None:
        """Claim one ready job of ``tasks`` (a row as the claim queries return them): an
        ordinary one from a queue without gates, else one of their rate limits' buckets."""


def row_from(values: Sequence[Any]) -> BreakerRow:
    """A BreakerRow from (name, state, tasks, recent, window, opened_at, probe_at, cooldown,
    probe_job, probe_token), JSON given as text (SQLite) or decoded (PostgreSQL jsonb)."""
    tasks, recent = values[2], values[3]
    return BreakerRow(
        name=values[0],
        state=values[1],
        tasks=list(json.loads(tasks) if isinstance(tasks, str) else tasks),
        recent=list(json.loads(recent) if isinstance(recent, str) else recent),
        window=float(values[4]),
        opened_at=None if values[5] is None else float(values[5]),
        probe_at=None if values[6] is None else float(values[6]),
        cooldown=None if values[7] is None else float(values[7]),
        probe_job=None if values[8] is None else int(values[8]),
        probe_token=values[9],
    )


def row_params(row: BreakerRow, now: float) -> dict[str, Any]:
    return {
        "name": row.name,
        "state": row.state,
        "tasks": json.dumps(row.tasks),
        "recent": json.dumps(row.recent),
        "window": row.window,
        "opened_at": row.opened_at,
        "probe_at": row.probe_at,
        "cooldown": row.cooldown,
        "probe_job": row.probe_job,
        "probe_token": row.probe_token,
        "now": now,
    }


class ClaimGate:
    """What the breakers make of one claim: the tasks it skips, the probes it took, and when
    the next probe may start."""

    __slots__ = ("held", "next_probe_at", "probes")

    def __init__(self) -> None:
        self.held: list[str] = []
        self.probes: list[Row] = []
        self.next_probe_at: float | None = None


def claim_gate(
    store: BreakerStore,
    now: float,
    queues: Sequence[str] | None,
    capped: Iterable[str],
    limit: int,
) -> ClaimGate:
    """Read the breakers that are not closed and take the probes due (up to ``limit``), inside
    the claim's transaction. A probe is taken under the breaker row's lock, after checking
    that no other probe runs, so two claimers never both take one."""
    result = ClaimGate()
    decided = gate(store.unsettled(), now)
    result.held, result.next_probe_at = decided.held, decided.next_probe_at
    if not decided.probing or limit <= 0:
        return result
    wanted = sorted(row.name for row in decided.probing)
    for row in store.lock(wanted, wait=False):
        if len(result.probes) >= limit:
            break
        if row.state == HALF_OPEN:
            job, token = row.probe_job, row.probe_token
            if job is not None and token is not None and store.probe_running(job, token):
                continue
        elif row.state != OPEN or row.probe_at is None or row.probe_at > now:
            continue
        probe = store.claim_probe(row.tasks, queues, sorted(capped))
        if probe is not None:
            store.save(probe_started(row, int(probe[0]), str(probe[8])), now)
            result.probes.append(probe)
    return result


def held_tasks(store: BreakerStore, now: float) -> list[str]:
    """The tasks behind breakers that are not closed: no suspect of theirs starts (a suspect is
    never a probe: it runs alone to find out what killed a worker, not whether a resource is
    back)."""
    return gate(store.unsettled(), now).held


def record_outcomes(store: BreakerStore, outcomes: Iterable[Outcome], now: float) -> bool:
    """Count the ends of runs behind breakers (outcomes already applied, so still owned) in
    the transaction that wrote them. True when a breaker changed state."""
    by_breaker: dict[str, tuple[Breaker, list[tuple[str, bool]]]] = {}
    for outcome in outcomes:
        hit = outcome.breaker
        if hit is not None:
            entry = by_breaker.setdefault(hit.breaker.name, (hit.breaker, []))
            entry[1].append((outcome.token, hit.failed))
    if not by_breaker:
        return False
    names = sorted(by_breaker)
    # A breaker in count mode writes nothing for successes alone while closed: no lock either.
    store.ensure(
        [
            breaker
            for breaker, events in by_breaker.values()
            if breaker.policy.ratio is not None or any(failed for _, failed in events)
        ],
        now,
    )
    rows = {row.name: row for row in store.lock(names, wait=True)}
    changed = False
    for name in names:
        breaker, events = by_breaker[name]
        before = rows.get(name)
        state = None if before is None else before.state
        after = record(before, breaker, events, now)
        if after is not None:
            store.save(after, now)
            changed = changed or after.state != state
    return changed
