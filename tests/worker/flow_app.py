"""The app of the flow control tests (tests/worker/test_flow.py): its database comes from
CONVEYOR_URL (and CONVEYOR_POSTGRES_SCHEMA), like any app that names none."""

from __future__ import annotations

from conveyor import Conveyor

app = Conveyor()


@app.task(name="flow.tick", queue="api")
def tick(n: int) -> int:
    return n


@app.task(name="flow.call", queue="api", rate_limit="20/s")
def call(n: int) -> int:
    return n
