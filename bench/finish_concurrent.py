"""Concurrent finishes: the write every worker makes when its jobs end. --workers processes
(spawned, as separate workers are) each claim --jobs no-op jobs beforehand, then all finish
theirs at once, --batch outcomes per finish_many call, one transaction each; reports finishes
per second over all of them. On PostgreSQL this shows whether finishing transactions commit
side by side (their disk flushes shared) or one at a time.

python bench/finish_concurrent.py [--workers 4] [--jobs 1000] [--batch 1] [--runs 3]
                                  [--url postgresql://...]
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.synchronize import Barrier
from typing import Any

from common import engine, finish, fresh_app, machine, parser, report
from conveyor import Conveyor
from conveyor.backends.base import ClaimedJob, Outcome, OutcomeKind


def _child(settings: dict[str, Any], jobs: int, batch: int, ready: Barrier, out: Any) -> None:
    app = Conveyor(**settings)
    backend = app.backend
    runs: list[ClaimedJob] = []
    while len(runs) < jobs:
        claimed = backend.claim("bench", None, min(500, jobs - len(runs)), 600.0)
        if not claimed:
            raise SystemExit(f"claimed {len(runs)} of {jobs} jobs, then nothing")
        runs.extend(claimed)
    outcomes = [
        Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED, result_json="null") for r in runs
    ]
    ready.wait()
    for start in range(0, len(outcomes), batch):
        backend.finish_many(outcomes[start : start + batch])
    out.put(len(outcomes))
    app.close()


def one_run(app: Conveyor, workers: int, jobs: int, batch: int) -> float:
    @app.task(name="noop")
    def noop() -> None:
        return None

    app.enqueue_many([noop.job() for _ in range(workers * jobs)])
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(workers + 1)
    out = context.Queue()
    settings = {
        "url": app.settings.url,
        "postgres_schema": app.settings.postgres_schema,
        "sqlite_synchronous": app.settings.sqlite_synchronous,
    }
    children = [
        context.Process(target=_child, args=(settings, jobs, batch, ready, out))
        for _ in range(workers)
    ]
    for child in children:
        child.start()
    ready.wait()
    start = time.perf_counter()
    total = sum(int(out.get()) for _ in children)
    elapsed = time.perf_counter() - start
    for child in children:
        child.join()
    return total / elapsed


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--jobs", type=int, default=1000, help="jobs finished by each process")
    p.add_argument("--batch", type=int, default=1, help="outcomes per finish_many call")
    args = p.parse_args()
    figures: list[float] = []
    described = ""
    for _ in range(args.runs):
        app, _folder = fresh_app(args.url, args.synchronous)
        figures.append(one_run(app, args.workers, args.jobs, args.batch))
        described = engine(app)
        finish(app)
    print(
        f"concurrent finishes, {args.workers} processes x {args.jobs} jobs, batch {args.batch}, "
        f"{machine()}, {described}"
    )
    report("  finishes", figures, "jobs/s")


if __name__ == "__main__":
    main()
