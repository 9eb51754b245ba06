"""Typed arguments at run time: a task declaring a dataclass or a Pydantic model receives one,
rebuilt from the stored JSON, whether it runs on a thread, on the event loop or in a process of
its own, on every engine."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pydantic
import pytest

from conveyor import Conveyor, JobContext, JobState
from tests.support import enabled_backends
from tests.worker.test_burst import run_burst


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Item(pydantic.BaseModel):
    name: str
    price: float


class Order(pydantic.BaseModel):
    id: int
    items: list[Item]


def describe(order: Order, point: Point, pair: tuple[int, int]) -> dict[str, Any]:
    """What the function received: types and a value computed from the rebuilt objects."""
    return {
        "types": [type(order).__name__, type(point).__name__, type(pair).__name__],
        "total": sum(item.price for item in order.items),
        "norm": point.x * point.x + point.y * point.y,
    }


def on_thread(order: Order, point: Point, pair: tuple[int, int]) -> dict[str, Any]:
    return describe(order, point, pair)


async def on_loop(order: Order, point: Point, pair: tuple[int, int]) -> dict[str, Any]:
    return describe(order, point, pair)


def in_process(
    ctx: JobContext, order: Order, point: Point, pair: tuple[int, int]
) -> dict[str, Any]:
    return describe(order, point, pair)


def in_process_async(order: Order, point: Point, pair: tuple[int, int]) -> dict[str, Any]:
    return describe(order, point, pair)


@pytest.fixture(params=enabled_backends())
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Conveyor]:
    with ExitStack() as stack:
        if request.param == "postgres":
            from tests.postgres.apps import postgres_app

            yield stack.enter_context(postgres_app())
        elif request.param == "redis":
            from tests.redis_engine.factory import redis_database

            url, prefix = stack.enter_context(redis_database())
            yield stack.enter_context(Conveyor(url, redis_prefix=prefix))
        else:
            yield stack.enter_context(Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}"))


def test_models_and_dataclasses_arrive_rebuilt(app: Conveyor) -> None:
    tasks = [
        app.task(name="typed.thread")(on_thread),
        app.task(name="typed.loop")(on_loop),
        app.task(name="typed.process", isolation="process", pass_context=True)(in_process),
        app.task(name="typed.process_async", isolation="process")(in_process_async),
    ]
    order = Order(id=1, items=[Item(name="a", price=1.5), Item(name="b", price=2)])
    ids = [task.enqueue(order, Point(3, 4), (1, 2)).id for task in tasks]
    # A JSON object enqueued by name (as the CLI does) is rebuilt the same way.
    ids.append(
        app.enqueue(
            "typed.thread",
            [{"id": 2, "items": [{"name": "c", "price": 3.5}]}, {"x": 3, "y": 4}, [1, 2]],
        ).id
    )
    run_burst(app, concurrency=4)

    for job_id in ids:
        job = app.get_job(job_id)
        assert job.state is JobState.SUCCEEDED, (job.task, job.errors)
        assert job.result["types"] == ["Order", "Point", "tuple"], job.task
        assert job.result["norm"] == 25
    assert [app.get_job(i).result["total"] for i in ids] == [3.5] * 5


def test_stored_arguments_that_do_not_fit_dead_letter_at_once(app: Conveyor) -> None:
    from conveyor.task import encode_job

    task = app.task(name="typed.thread")(on_thread)
    process = app.task(name="typed.process", isolation="process", pass_context=True)(in_process)
    # Written without the check (a producer that enqueues by name with raw JSON).
    raw = [
        encode_job(name, [{"id": 1}, {"x": 1}, [1, 2]], {}, max_payload_bytes=10_000)
        for name in (task.name, process.name)
    ]
    ids = [job.id for job in app.enqueue_raw(raw)]
    run_burst(app, concurrency=2)

    for job_id in ids:
        job = app.get_job(job_id)
        assert (job.state, job.attempts) == (JobState.DEAD, 1), job.errors
        assert job.errors[0].type == "conveyor.task.NonRetryable"
        assert "argument order.items is not valid" in job.errors[0].message
