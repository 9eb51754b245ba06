"""The server-side ceiling of a PostgreSQL drain: the claim and finish statements a worker sends
(queries.sql's promote_due and claim_any, with claim_plan's setting, then finish_succeeded),
driven by ``pgbench -M prepared`` with no Python around them, over a table refilled with N
queued no-op jobs before every run. Each pgbench transaction claims a batch and finishes it.

    python bench/pg_drain_ceiling.py --url postgresql://... [--jobs 10000] [--batch 500]
                                     [--clients 1,2,4] [--runs 3]

Reports jobs/s claimed and finished per client count, and WAL bytes per job two ways: the
server's WAL position before and after each run (the whole cluster: other sessions' writes
count too on a shared server), and EXPLAIN (ANALYZE, WAL) of one claim and one finish of a batch
(these statements' own records, exact, without the commit records). The statements are read
from the engine's queries.sql at run time, so the ceiling follows any change to them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from common import PG_QUERIES, engine, finish, fresh_app, machine, parser, report
from conveyor.backends.sql import load_queries

Q = load_queries("conveyor.backends.postgres")
_PARAM = re.compile(r"%\((\w+)\)[sb]")


def pgbench_sql(query: str, values: dict[str, str]) -> str:
    """A queries.sql statement as one pgbench command: comments out, parameters replaced by
    pgbench variables (``:name``, bound as prepared-statement parameters) or literals."""
    lines = [line.split("--", 1)[0].rstrip() for line in query.splitlines()]
    text = " ".join(line.strip() for line in lines if line.strip())
    return _PARAM.sub(lambda m: values.get(m[1], f":{m[1]}"), text)


def scripts(folder: Path) -> Path:
    """The pgbench script: promote_due and the claim (the worker pipelines them with claim_plan
    in one round trip; pgbench cannot keep a result from a pipeline, so they go one after the
    other and claim_plan's setting is the session's, see run_pgbench), the batch's ids and
    tokens kept in pgbench variables, then the finish."""
    literals = {"now": "NULL", "lease": "300", "worker_id": "'ceiling'", "channel": "'ceiling'"}
    claim = pgbench_sql(Q["claim_any"], literals)
    claim_into_variables = (
        f"WITH claimed AS ({claim}) "
        "SELECT coalesce(array_agg(id), '{}') AS ids, "
        "coalesce(array_agg(lease_token), '{}') AS tokens, "
        "coalesce(array_agg(NULL::text), '{}') AS results FROM claimed"
    )
    body = "\n".join(
        [
            pgbench_sql(Q["promote_due"], literals) + ";",
            claim_into_variables,
            "\\gset",
            pgbench_sql(Q["finish_succeeded"], literals) + ";",
            "",
        ]
    )
    path = folder / "drain.sql"
    path.write_text(body, encoding="utf-8")
    return path


def run_pgbench(
    url: str, schema: str, script: Path, clients: int, transactions: int, batch: int
) -> float:
    """Transactions per second pgbench reports (its own timing, connections excluded)."""
    argv = ["pgbench", "-n", "-M", "prepared", "-f", str(script), "-c", str(clients)]
    argv += ["-j", str(clients), "-t", str(transactions), "-D", f"limit={batch}", url]
    # claim_plan's setting for the whole session: the worker sets it in each claim transaction.
    options = f"-c search_path={schema} -c enable_bitmapscan=off"
    env = {**os.environ, "PGOPTIONS": options}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"pgbench failed:\n{out.stderr}")
    match = re.search(r"tps = ([0-9.]+)", out.stdout)
    if match is None:
        raise SystemExit(f"no tps in pgbench output:\n{out.stdout}")
    return float(match[1])


def fill(conn: Any, jobs: int) -> None:
    conn.execute(PG_QUERIES["ceiling_empty"])
    conn.execute(PG_QUERIES["ceiling_fill"], {"jobs": jobs})


def wal_lsn(conn: Any) -> int:
    row = conn.execute(PG_QUERIES["wal_position"]).fetchone()
    return int(row[0])


def explained_wal(conn: Any, batch: int) -> tuple[float, float, float]:
    """WAL bytes per job of one claim and one finish of ``batch`` jobs, and full-page images
    per job of both, from EXPLAIN (ANALYZE, WAL), in a transaction rolled back afterwards."""
    literals = {"now": "NULL", "lease": "300", "worker_id": "'ceiling'", "channel": "'ceiling'"}
    claim = _PARAM.sub(lambda m: literals.get(m[1], f"%({m[1]})s"), Q["claim_any"])
    finish_sql = _PARAM.sub(lambda m: literals.get(m[1], f"%({m[1]})s"), Q["finish_succeeded"])
    with conn.transaction(force_rollback=True):
        conn.execute(Q["claim_plan"])
        plan = conn.execute("EXPLAIN (ANALYZE, WAL, FORMAT JSON) " + claim, {"limit": batch})
        claim_plan = _top(plan.fetchone())
        rows = conn.execute(PG_QUERIES["ceiling_running"]).fetchall()
        ids = [r[0] for r in rows]
        tokens = [r[1] for r in rows]
        plan = conn.execute(
            "EXPLAIN (ANALYZE, WAL, FORMAT JSON) " + finish_sql,
            {"ids": ids, "tokens": tokens, "results": [None] * len(ids)},
        )
        finish_plan = _top(plan.fetchone())
    n = max(1, len(ids))
    fpi = claim_plan.get("WAL FPI", 0) + finish_plan.get("WAL FPI", 0)
    return claim_plan.get("WAL Bytes", 0) / n, finish_plan.get("WAL Bytes", 0) / n, fpi / n


def _top(row: Any) -> dict[str, Any]:
    document = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    plan: dict[str, Any] = document[0]["Plan"]
    return plan


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--clients", default="1,2,4", help="comma-separated pgbench client counts")
    args = p.parse_args()
    if not args.url or not args.url.startswith("postgresql"):
        raise SystemExit("--url postgresql://... is required")
    import psycopg

    clients = [int(c) for c in args.clients.split(",")]
    app, _folder = fresh_app(args.url, args.synchronous)
    schema = app.settings.postgres_schema
    rates: dict[int, list[float]] = {c: [] for c in clients}
    wal: dict[int, list[float]] = {c: [] for c in clients}
    try:
        with tempfile.TemporaryDirectory() as folder:
            script = scripts(Path(folder))
            with psycopg.connect(args.url, autocommit=True) as conn:
                conn.execute(PG_QUERIES["use_schema_plain"], {"schema": schema})
                for _ in range(args.runs):
                    for c in clients:
                        transactions = -(-args.jobs // (args.batch * c))
                        fill(conn, args.jobs)
                        before = wal_lsn(conn)
                        tps = run_pgbench(args.url, schema, script, c, transactions, args.batch)
                        after = wal_lsn(conn)
                        done = conn.execute(PG_QUERIES["ceiling_succeeded"]).fetchone()
                        count = int(done[0]) if done else 0
                        if count != args.jobs:
                            raise SystemExit(f"{count} of {args.jobs} jobs succeeded")
                        seconds = c * transactions / tps
                        rates[c].append(count / seconds)
                        wal[c].append((after - before) / count)
                fill(conn, args.jobs)
                claim_wal, finish_wal, fpi = explained_wal(conn, args.batch)
        described = engine(app)
    finally:
        finish(app)
    print(
        f"PostgreSQL drain ceiling (pgbench -M prepared, claim_any + finish_succeeded, "
        f"batch {args.batch}, {args.jobs} jobs), {machine()}, {described}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    for c in clients:
        report(f"  {c} client(s): claimed+finished", rates[c], "jobs/s")
        report(f"  {c} client(s): WAL per job (cluster-wide LSN diff)", wal[c], "B")
    print(
        f"  WAL per job of the statements (EXPLAIN WAL): claim {claim_wal:,.0f} B, "
        f"finish {finish_wal:,.0f} B, total {claim_wal + finish_wal:,.0f} B "
        f"({fpi:.2f} full-page images per job)"
    )


if __name__ == "__main__":
    main()
