"""Workflow scale: fan-out of N children from one parent, fan-in of N parents into one child.

python bench/workflow_scale.py [--width 10000] [--runs 3] [--url postgresql://...]

Fan-out: one enqueue_many writes the parent and its N children (blocked); then the parent's
success, one finish_many, unblocks all N in its transaction -- timed alone. Fan-in: one
enqueue_many writes N parents and the child; the parents are then claimed and finished in
batches of 500 (the worker's shape), and the time is set beside the same N jobs without a
child: the difference is what the edges cost. Both must grow linearly with N.
"""

from __future__ import annotations

import time

from common import engine, finish, fresh_app, machine, parser, report
from conveyor import Conveyor
from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.job import JobState

BATCH = 500


def finish_all(app: Conveyor) -> float:
    """Claim and succeed every ready job, BATCH at a time; the seconds it took."""
    backend = app.backend
    start = time.perf_counter()
    while runs := backend.claim("bench", None, BATCH, 60.0):
        backend.finish_many(
            [Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED, result_json="1") for r in runs]
        )
    return time.perf_counter() - start


def fan_out(url: str | None, synchronous: str, width: int) -> tuple[float, float]:
    app, _ = fresh_app(url, synchronous)
    try:
        task = app.task(name="noop")(lambda: None)
        parent = task.job()
        after = task.options(depends_on=[parent])
        children = [after.job() for _ in range(width)]
        start = time.perf_counter()
        app.enqueue_many([parent, *children])
        enqueued = time.perf_counter() - start
        [run] = app.backend.claim("bench", None, 1, 60.0)
        start = time.perf_counter()
        app.backend.finish_many([Outcome(run.id, run.lease_token, OutcomeKind.SUCCEEDED)])
        released = time.perf_counter() - start
        ready = sum(c.get(JobState.QUEUED, 0) for c in app.stats().values())
        assert ready == width, f"{ready} of {width} children ready"
        return enqueued, released
    finally:
        finish(app)


def fan_in(url: str | None, synchronous: str, width: int, child: bool) -> tuple[float, float]:
    app, _ = fresh_app(url, synchronous)
    try:
        task = app.task(name="noop")(lambda: None)
        parents = [task.job() for _ in range(width)]
        specs = [*parents, task.options(depends_on=parents).job()] if child else parents
        start = time.perf_counter()
        app.enqueue_many(specs)
        enqueued = time.perf_counter() - start
        drained = finish_all(app)
        done = sum(c.get(JobState.SUCCEEDED, 0) for c in app.stats().values())
        assert done == len(specs), f"{done} of {len(specs)} succeeded"
        return enqueued, drained
    finally:
        finish(app)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--width", type=int, default=10_000)
    args = p.parse_args()
    out_enqueue, out_release, in_enqueue, in_drain, plain_drain = [], [], [], [], []
    for _ in range(args.runs):
        enqueued, released = fan_out(args.url, args.synchronous, args.width)
        out_enqueue.append(enqueued)
        out_release.append(released)
        enqueued, drained = fan_in(args.url, args.synchronous, args.width, child=True)
        in_enqueue.append(enqueued)
        in_drain.append(drained)
        plain_drain.append(fan_in(args.url, args.synchronous, args.width, child=False)[1])
    app, _ = fresh_app(args.url, args.synchronous)
    described = engine(app)
    finish(app)
    print(f"workflow scale, width {args.width:,}; {described}; {machine()}")

    def ms(value: float) -> str:
        return f"{value * 1000:,.1f}"

    report("fan-out: enqueue parent + children", out_enqueue, "ms", ms)
    report("fan-out: parent's success unblocks every child", out_release, "ms", ms)
    report("fan-in: enqueue parents + child", in_enqueue, "ms", ms)
    report("fan-in: claim + finish every parent (child unblocked)", in_drain, "ms", ms)
    report("baseline: claim + finish as many jobs without a child", plain_drain, "ms", ms)


if __name__ == "__main__":
    main()
