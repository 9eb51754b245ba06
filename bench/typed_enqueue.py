"""What checking type hints costs at enqueue: the same jobs of an untyped task and of a typed one,
side by side in one run (single enqueue as W1s, bulk as W1's enqueue_many), and the checker's
own time per job.

python bench/typed_enqueue.py [--jobs 2000] [--bulk 10000] [--runs 3] [--variants untyped,typed]

Tasks: ``add(x, y)`` (untyped), ``add(x: int, y: int)`` (typed), ``noop()`` (W1's no-argument
job), and ``draw(p: Point, n: int)`` with a dataclass (checked and converted to a JSON object).
Within a run the variants alternate order, so that drift on a shared machine hits them alike.
"""

from __future__ import annotations

import dataclasses
import functools
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


class Clock:
    """Wall and CPU time of one variant, summed over its slices of a run."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.jobs = 0

    def time(self, jobs: int, body: Callable[[], object]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        body()
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        self.jobs += jobs


def single(clocks: dict[str, Clock], tasks: dict[str, Any], jobs: int, slice_: int) -> None:
    """``jobs`` single enqueues per variant, in slices that take turns: a burst of load on the
    machine then hits every variant alike."""
    names = list(clocks)
    for turn in range(jobs // slice_):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            task, make = tasks[name], ARGS[name]

            def body(task: Any = task, make: Any = make, base: int = turn * slice_) -> None:
                for n in range(base, base + slice_):
                    task.enqueue(*make(n))

            clocks[name].time(slice_, body)


def bulk(clocks: dict[str, Clock], app: Conveyor, tasks: dict[str, Any], jobs: int) -> None:
    """One enqueue_many of ``jobs`` jobs per variant (building the specs is not timed)."""
    for name in clocks:
        specs: list[Any] = [tasks[name].job(*ARGS[name](n)) for n in range(jobs)]
        clocks[name].time(jobs, functools.partial(app.enqueue_many, specs))


def check_cost(task: Any, args: tuple[Any, ...], rounds: int = 200_000) -> float:
    """Microseconds of CPU per call of the task's compiled checker alone (0 without one)."""
    types = getattr(task, "types", None)
    if types is None:
        return 0.0
    start = time.process_time()
    for _ in range(rounds):
        types.encode(args, {})
    return (time.process_time() - start) / rounds * 1e6


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=2_000, help="single enqueues per variant")
    p.add_argument("--slice", type=int, default=50, help="single enqueues per turn")
    p.add_argument("--bulk", type=int, default=10_000, help="jobs per enqueue_many")
    p.add_argument(
        "--variants",
        default=",".join(ARGS),
        help="which tasks to run (a Conveyor without typed arguments cannot take 'dataclass')",
    )
    args = p.parse_args()
    names = [name for name in args.variants.split(",") if name]
    figures: dict[str, dict[str, list[Clock]]] = {"single": {}, "bulk": {}}
    costs: dict[str, float] = {}
    described = ""
    for run in range(args.runs):
        app, _folder = fresh_app(args.url, args.synchronous)
        tasks = register(app)
        for name in names:  # warm up: schema, statements, the checker's first use
            tasks[name].enqueue(*ARGS[name](0))
        order = names if run % 2 == 0 else names[::-1]
        singles = {name: Clock() for name in order}
        single(singles, tasks, args.jobs, args.slice)
        bulks = {name: Clock() for name in order}
        bulk(bulks, app, tasks, args.bulk)
        for kind, clocks in (("single", singles), ("bulk", bulks)):
            for name, clock in clocks.items():
                figures[kind].setdefault(name, []).append(clock)
        for name in names:
            costs[name] = check_cost(tasks[name], ARGS[name](7))
        described = engine(app)
        finish(app)
    print(f"Typed arguments at enqueue, {machine()}, {described}")
    for kind, jobs in (("single", args.jobs), ("bulk", args.bulk)):
        print(f" {kind} enqueue ({jobs} jobs per variant and run)")
        for name in names:
            runs = figures[kind][name]
            report(f"  {name:>9} wall", [c.jobs / c.wall for c in runs], "jobs/s")
            report(f"  {name:>9}  cpu", [c.cpu / c.jobs * 1e6 for c in runs], "µs/job", _us)
        if "typed" in names and "untyped" in names:
            for what in ("wall", "cpu"):
                pairs = zip(figures[kind]["typed"], figures[kind]["untyped"], strict=True)
                ratios = [getattr(t, what) / getattr(u, what) for t, u in pairs]
                each = ", ".join(f"{r:.3f}" for r in ratios)
                print(
                    f"  typed / untyped {what} time per job: {statistics.median(ratios):.3f} "
                    f"(median of {len(ratios)}: {each})"
                )
    for name in names:
        print(f" checker alone, {name}: {costs[name]:.2f} µs of CPU per job")


def _us(value: float) -> str:
    return f"{value:,.1f}"


if __name__ == "__main__":
    main()
