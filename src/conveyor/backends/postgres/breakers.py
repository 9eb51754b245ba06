"""The circuit breakers of the PostgreSQL engine: a BreakerStore on one open transaction.

Rows are locked before they are judged: a claim locks the rows of breakers due for a probe
with SKIP LOCKED (a row another claim holds is that claim's probe to take), a finish batch and
an operator wait for theirs. A finish batch locks job rows first and breaker rows second, and
claims skip locked rows of both, so they never wait on each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.backends.breakers import RateProbe, Row, row_from, row_params
from conveyor.backends.postgres.connection import Cursor
from conveyor.backends.sql import load_queries
from conveyor.limits.breakers import Breaker, BreakerRow

QB = load_queries("conveyor.backends.postgres", "breakers.sql")


class PostgresBreakers:
    def __init__(
        self,
        cur: Cursor,
        claim_params: dict[str, Any] | None = None,
        rate_probe: RateProbe | None = None,
    ) -> None:
        """``rate_probe``: how the claim takes a job of rate-limited tasks (under their
        buckets' tokens and their queues' gates), for a breaker whose tasks have rate limits."""
        self._cur = cur
        self._claim_params = claim_params
        self._rate_probe = rate_probe

    def unsettled(self) -> list[BreakerRow]:
        return [row_from(r) for r in self._cur.execute(QB["unsettled_breaker_rows"]).fetchall()]

    def lock(self, names: Sequence[str], *, wait: bool) -> list[BreakerRow]:
        query = QB["lock_breakers_wait" if wait else "lock_breakers"]
        rows = self._cur.execute(query, {"names": list(names)}).fetchall()
        return [row_from(r) for r in rows]

    def ensure(self, breakers: Sequence[Breaker], now: float) -> None:
        for breaker in sorted(breakers, key=lambda b: b.name):
            params = {"name": breaker.name, "window": breaker.policy.window, "now": now}
            self._cur.execute(QB["create_breaker"], params)

    def save(self, row: BreakerRow, now: float) -> None:
        self._cur.execute(QB["save_breaker"], row_params(row, now))

    def probe_running(self, job_id: int, token: str) -> bool:
        params = {"id": job_id, "token": token}
        return self._cur.execute(QB["probe_running"], params).fetchone() is not None

    def claim_probe(
        self, tasks: Sequence[str], queues: Sequence[str] | None, capped: Sequence[str]
    ) -> Row | None:
        assert self._claim_params is not None
        params = {
            **self._claim_params,
            "tasks": list(tasks),
            "queues": None if queues is None else list(queues),
            "capped": list(capped),
        }
        row = self._cur.execute(QB["claim_probe"], params).fetchone()
        if row is not None:
            return tuple(row)
        return None if self._rate_probe is None else self._rate_probe(tasks)

    def now(self, now: float | None) -> float:
        """The transaction's time (or the injected clock's), in UNIX seconds."""
        row = self._cur.execute(QB["breaker_now"], {"now": now}).fetchone()
        assert row is not None
        return float(row[0])


def list_breakers(cur: Cursor) -> list[BreakerRow]:
    return [row_from(r) for r in cur.execute(QB["list_breakers"]).fetchall()]
