"""Running the dependency statements (backends/dependencies.py) on PostgreSQL: on a cursor
inside an operation's transaction, or as steps of an enqueue (steps.py)."""

from __future__ import annotations

import json
from typing import Any

from conveyor.backends.dependencies import Sql, T
from conveyor.backends.postgres.connection import Cursor, Q
from conveyor.backends.postgres.steps import Statement, Steps


def _bound(params: dict[str, Any]) -> dict[str, Any]:
    if "rows" in params:
        return {**params, "rows": json.dumps(params["rows"])}
    return params


def run_sql(cur: Cursor, steps: Sql[T]) -> T:
    try:
        name, params = next(steps)
        while True:
            cur.execute(Q[name], _bound(params))
            rows = cur.fetchall() if cur.description is not None else []
            name, params = steps.send(rows)
    except StopIteration as done:
        result: T = done.value
        return result


def as_steps(steps: Sql[T]) -> Steps[T]:
    """The same statements, yielded as steps (for the enqueue, which runs on sync and async
    connections alike)."""
    try:
        name, params = next(steps)
        while True:
            rows = yield Statement(Q[name], _bound(params))
            name, params = steps.send(rows)
    except StopIteration as done:
        result: T = done.value
        return result
