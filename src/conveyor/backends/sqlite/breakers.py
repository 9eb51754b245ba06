"""The circuit breakers of the SQLite engine: a BreakerStore on the writer's open transaction,
which no other writer shares, so reading a row is as good as locking it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from conveyor.backends.breakers import RateProbe, Row, row_from, row_params
from conveyor.backends.sql import load_queries
from conveyor.limits.breakers import Breaker, BreakerRow

QB = load_queries("conveyor.backends.sqlite", "breakers.sql")


class SQLiteBreakers:
    def __init__(
        self,
        db: sqlite3.Connection,
        claim_params: dict[str, Any] | None = None,
        rate_probe: RateProbe | None = None,
    ) -> None:
        """``rate_probe``: how the claim takes a job of rate-limited tasks (under their
        buckets' tokens and their queues' gates), for a breaker whose tasks have rate limits."""
        self._db = db
        self._claim_params = claim_params
        self._rate_probe = rate_probe

    def unsettled(self) -> list[BreakerRow]:
        return [row_from(r) for r in self._db.execute(QB["unsettled_breaker_rows"])]

    def lock(self, names: Sequence[str], *, wait: bool) -> list[BreakerRow]:
        rows = self._db.execute(QB["lock_breakers"], {"names": json.dumps(list(names))})
        return [row_from(r) for r in rows]

    def ensure(self, breakers: Sequence[Breaker], now: float) -> None:
        """Nothing to do: the write transaction already excludes every other writer."""

    def save(self, row: BreakerRow, now: float) -> None:
        self._db.execute(QB["save_breaker"], row_params(row, now))

    def probe_running(self, job_id: int, token: str) -> bool:
        found = self._db.execute(QB["probe_running"], {"id": job_id, "token": token}).fetchone()
        return found is not None

    def claim_probe(
        self, tasks: Sequence[str], queues: Sequence[str] | None, capped: Sequence[str]
    ) -> Row | None:
        assert self._claim_params is not None
        params = {
            **self._claim_params,
            "tasks": json.dumps(list(tasks)),
            "queues": None if queues is None else json.dumps(list(queues)),
            "capped": json.dumps(list(capped)),
        }
        row = self._db.execute(QB["claim_probe"], params).fetchone()
        if row is not None:
            return tuple(row)
        return None if self._rate_probe is None else self._rate_probe(tasks)


def list_breakers(db: sqlite3.Connection) -> list[BreakerRow]:
    return [row_from(r) for r in db.execute(QB["list_breakers"])]
