"""Concurrent finishes: the write every worker makes when its jobs end. --workers processes
(spawned, as separate workers are) each claim --jobs no-op jobs beforehand, then all finish
theirs at once, --batch outcomes per finish_many call, one transaction each; reports finishes
per second over all of them. On PostgreSQL this shows whether finishing transactions commit
side by side (their disk flushes shared) or one at a time.

python bench/finish_concurrent.py [--workers 4] [--jobs 1000] [--batch 1] [--runs 3]
                                  [--url postgresql://...]
"""

from __future__ import annotations

from multiprocessing.synchronize import Barrier
from typing import Any

from common import engine, finish, fresh_app, machine, parser, rate_in_processes, report
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
    return rate_in_processes(app, workers, _child, jobs, batch)


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
