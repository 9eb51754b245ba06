"""Tasks of the workflow tests. Module level, so that process isolation can import them."""

from __future__ import annotations

from typing import Any

from conveyor import Conveyor, JobContext


def value(x: int) -> int:
    return x


def add_parents(ctx: JobContext, plus: int = 0) -> int:
    return int(sum(ctx.parent_results.values())) + plus


def report(ctx: JobContext) -> dict[str, Any]:
    return {
        "states": {str(k): v for k, v in sorted(ctx.parent_states.items())},
        "results": {str(k): v for k, v in sorted(ctx.parent_results.items())},
    }


def fail() -> None:
    raise ValueError("no")


def register(app: Conveyor) -> Conveyor:
    app.task(name="value")(value)
    app.task(name="add_parents", pass_context=True)(add_parents)
    app.task(name="add_in_process", pass_context=True, isolation="process")(add_parents)
    app.task(name="report", pass_context=True)(report)
    app.task(name="fail", max_attempts=1)(fail)
    app.task(name="aider")(aider)
    app.task(name="limited", max_attempts=5)(limited)
    app.task(name="codex", pass_context=True, queue="premium")(codex)
    return app


class RateLimited(Exception):
    pass


def aider(x: int) -> None:
    raise ValueError(f"aider could not do {x}")


def limited(x: int) -> None:
    raise RateLimited("slow down")


def codex(ctx: JobContext, x: int) -> dict[str, Any]:
    return {"did": x, "escalation": ctx.escalation}
