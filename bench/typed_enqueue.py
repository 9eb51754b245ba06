"""What checking type hints costs at enqueue: the same jobs of an untyped task and of a typed one,
side by side in one run (single enqueue as W1s, bulk as W1's enqueue_many), and the checker's
own time per job.

python bench/typed_enqueue.py [--jobs 2000] [--bulk 10000] [--runs 3]

Tasks: ``add(x, y)`` (untyped), ``add(x: int, y: int)`` (typed), ``noop()`` (W1's no-argument
job), and ``draw(p: Point, n: int)`` with a dataclass (checked and converted to a JSON object).
Within a run the variants alternate order, so that drift on a shared machine hits them alike.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

from common import engine, finish, fresh_app, machine, parser, report
from conveyor import Conveyor


@dataclasses.dataclass
class Point:
    x: int
    y: int


def register(app: Conveyor) -> dict[str, Any]:
    @app.task(name="untyped")
    def untyped(x, y):  # type: ignore[no-untyped-def]
        return x + y

    @app.task(name="typed")
    def typed(x: int, y: int) -> int:
        return x + y

    @app.task(name="noop")
    def noop() -> None:
        return None

    @app.task(name="dataclass")
    def draw(p: Point, n: int) -> int:
        return p.x + n

    return {"untyped": untyped, "typed": typed, "noop": noop, "dataclass": draw}


ARGS: dict[str, Callable[[int], tuple[Any, ...]]] = {
    "untyped": lambda n: (n, 1),
    "typed": lambda n: (n, 1),
    "noop": lambda n: (),
    "dataclass": lambda n: (Point(n, 1), n),
}


def single(task: Any, jobs: int, args: Callable[[int], tuple[Any, ...]]) -> float:
    start = time.perf_counter()
    for n in range(jobs):
        task.enqueue(*args(n))
    return jobs / (time.perf_counter() - start)


def bulk(app: Conveyor, task: Any, jobs: int, args: Callable[[int], tuple[Any, ...]]) -> float:
    specs = [task.job(*args(n)) for n in range(jobs)]
    start = time.perf_counter()
    app.enqueue_many(specs)
    return jobs / (time.perf_counter() - start)


def check_cost(task: Any, args: tuple[Any, ...], rounds: int = 200_000) -> float:
    """Microseconds per call of the task's compiled checker alone (0 without one)."""
    types = getattr(task, "types", None)
    if types is None:
        return 0.0
    start = time.perf_counter()
    for _ in range(rounds):
        types.encode(args, {})
    return (time.perf_counter() - start) / rounds * 1e6


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=2_000, help="single enqueues per variant")
    p.add_argument("--bulk", type=int, default=10_000, help="jobs per enqueue_many")
    args = p.parse_args()
    names = list(ARGS)
    singles: dict[str, list[float]] = {name: [] for name in names}
    bulks: dict[str, list[float]] = {name: [] for name in names}
    costs: dict[str, float] = {}
    described = ""
    for run in range(args.runs):
        app, _folder = fresh_app(args.url, args.synchronous)
        tasks = register(app)
        for task in tasks.values():  # warm up: schema, statements, the checker's first use
            task.enqueue(*ARGS[task.name](0))
        order = names if run % 2 == 0 else names[::-1]
        for name in order:
            singles[name].append(single(tasks[name], args.jobs, ARGS[name]))
        for name in order:
            bulks[name].append(bulk(app, tasks[name], args.bulk, ARGS[name]))
        for name in names:
            costs[name] = check_cost(tasks[name], ARGS[name](7))
        described = engine(app)
        finish(app)
    print(f"Typed arguments at enqueue, {machine()}, {described}")
    for kind, figures, jobs in (("single", singles, args.jobs), ("bulk", bulks, args.bulk)):
        print(f" {kind} enqueue ({jobs} jobs per variant)")
        for name in names:
            report(f"  {name:>9}", figures[name], "jobs/s")
        ratios = [t / u for t, u in zip(figures["typed"], figures["untyped"], strict=True)]
        runs = ", ".join(f"{r:.3f}" for r in ratios)
        print(f"  typed / untyped, per run: {statistics.median(ratios):.3f} (median; {runs})")
    for name in names:
        print(f" checker alone, {name}: {costs[name]:.2f} µs per job")


if __name__ == "__main__":
    main()
