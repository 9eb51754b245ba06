"""The database cost of the hot path: claim N jobs in batches and finish them, straight on the
backend (no worker), reporting wall time per job of claims and finishes and this process's CPU
time per job (the figure that stays comparable while other work loads the machine); on a
PostgreSQL server on this machine, also the CPU time of the server processes serving it.

    python bench/claim_cost.py [--url URL] [--jobs 10000] [--batches 1,100,500]
                               [--queues all|one] [--cap none|other|queue] [--runs 3]
                               [--breaker none|open] [--held 1000]
                               [--gates none|rate|other|many|keys|idle-keys|rate-keys]

--cap other puts a cap on a queue that holds no jobs (a worker serving every queue must respect
it); --cap queue caps the measured queue itself, high enough never to bind. --breaker open
enqueues --held jobs of a task behind a circuit breaker opened by hand, ahead of the measured
jobs in the claim order (the worst place: every claim walks past them).

--gates (conveyor/limits/): "rate" puts a rate limit on the measured queue, high enough never to
bind (a rate-limited claim takes one job per token: compare it with --batches 1); "other" a rate
limit and a pause on a queue that holds no jobs; "many" 1,000 other queues, each paused or rate
limited, that hold no jobs; "keys" a task limited per key with 1,000 keys, each holding a job
waiting for its next token ("idle-keys": its token ready and no job); "rate-keys" both "rate"
and "keys" (with --breaker open: a rate limit, a breaker and 1,000 keys at once).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from common import PG_QUERIES, engine, finish, fresh_app, is_postgres, machine, parser, report
from conveyor import Conveyor
from conveyor.backends.base import Outcome, OutcomeKind

_TICK = os.sysconf("SC_CLK_TCK")


def server_cpu(app: Conveyor, session: str | None) -> dict[int, float]:
    """CPU seconds used so far by each server process whose connection is named ``session``,
    read from /proc (nothing when the server is not on this machine, or not PostgreSQL)."""
    if session is None:
        return {}
    import psycopg

    with psycopg.connect(app.settings.url, application_name="claim_cost_probe") as conn:
        pids = [row[0] for row in conn.execute(PG_QUERIES["sessions"], {"name": session})]
    seconds: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    return seconds


def one_run(
    app: Conveyor,
    session: str | None,
    jobs: int,
    batch: int,
    queues: list[str] | None,
    held: int = 0,
) -> list[float]:
    @app.task(name="noop")
    def noop() -> None:
        return None

    if held:
        app.breaker("partner")

        @app.task(name="held", breaker="partner")
        def call_partner() -> None:
            return None

        app.enqueue_many([call_partner.job() for _ in range(held)])
        app.open_breaker("partner")

    app.enqueue_many([noop.job() for _ in range(jobs)])
    backend = app.backend
    claim = done = 0.0
    claimed = 0
    cpu = time.process_time()
    server_before = server_cpu(app, session)
    while claimed < jobs:
        started = time.perf_counter()
        runs = backend.claim("bench", queues, batch, 30.0)
        middle = time.perf_counter()
        backend.finish_many(
            [Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED, result_json="null") for r in runs]
        )
        done += time.perf_counter() - middle
        claim += middle - started
        claimed += len(runs)
        if not runs:
            raise SystemExit(f"claimed {claimed} of {jobs} jobs, then nothing")
    cpu = time.process_time() - cpu
    server = sum(t - server_before.get(pid, 0.0) for pid, t in server_cpu(app, session).items())
    return [claim / jobs * 1e6, done / jobs * 1e6, cpu / jobs * 1e6, server / jobs * 1e6]


def thousand_keys(app: Conveyor, *, idle: bool) -> None:
    """A task limited to one start an hour per key, and 1,000 keys: each with a job waiting
    for its next token, or (``idle``) with its token ready and no job."""

    @app.task(name="limited", rate_limit="1/h")
    def limited() -> None:
        return None

    specs = [limited.options(rate_key=f"tenant-{n}").job() for n in range(1000)]
    if idle:
        for job in app.enqueue_many(specs):
            app.cancel(job.id)
        return
    app.enqueue_many(specs)
    runs = app.backend.claim("setup", None, 1000, 30.0)
    assert len(runs) == 1000, len(runs)
    app.backend.finish_many([Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED) for r in runs])
    app.enqueue_many(specs)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--batches", default="1,100,500")
    p.add_argument("--queues", choices=["all", "one"], default="all")
    p.add_argument("--cap", choices=["none", "other", "queue"], default="none")
    p.add_argument(
        "--gates",
        choices=["none", "rate", "other", "many", "keys", "idle-keys", "rate-keys"],
        default="none",
    )
    p.add_argument("--breaker", choices=["none", "open"], default="none")
    p.add_argument("--held", type=int, default=1000)
    args = p.parse_args()
    queues = None if args.queues == "all" else ["default"]
    described = ""
    results: dict[int, list[list[float]]] = {}
    for _ in range(args.runs):
        for batch in (int(b) for b in args.batches.split(",")):
            url, session = args.url, None
            if is_postgres(url):
                session = f"claim_cost_{secrets.token_hex(4)}"
                url = f"{url}{'&' if '?' in url else '?'}application_name={session}"
            app, _folder = fresh_app(url, args.synchronous)
            if args.cap == "other":
                app.set_concurrency_limit("capped", 5)
            elif args.cap == "queue":
                app.set_concurrency_limit("default", 10 * batch)
            # The keys first: their set-up claims 1,000 jobs at once, which a rate limit of
            # the queue would spread over 1,000 claims.
            if args.gates in ("keys", "idle-keys", "rate-keys"):
                thousand_keys(app, idle=args.gates == "idle-keys")
            if args.gates in ("rate", "rate-keys"):
                app.set_rate_limit("default", "1000000/s")
            elif args.gates == "other":
                app.set_rate_limit("limited", "100/s")
                app.pause_queue("limited")
            elif args.gates == "many":
                for n in range(1000):
                    if n % 2:
                        app.set_rate_limit(f"tenant-{n}", "10/s")
                    else:
                        app.pause_queue(f"tenant-{n}")
            held = args.held if args.breaker == "open" else 0
            measured = one_run(app, session, args.jobs, batch, queues, held)
            results.setdefault(batch, []).append(measured)
            described = engine(app)
            finish(app)
    print(
        f"claim cost, {args.jobs} no-op jobs, {machine()}, {described}, "
        f"queues={args.queues}, cap={args.cap}, gates={args.gates}, breaker={args.breaker}"
        + (f" ({args.held} held jobs)" if args.breaker == "open" else "")
    )
    for batch, runs in results.items():
        names = ["claim wall", "finish wall", "cpu"] + ["server cpu"] * is_postgres(args.url)
        for index, name in enumerate(names):
            values = [run[index] for run in runs]
            report(f"  batch {batch:>3} {name}", values, "us/job", lambda v: f"{v:.1f}")


if __name__ == "__main__":
    main()
