"""Shared helpers for the benchmark workloads of shared/BENCH.md."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from conveyor import Conveyor
from conveyor.backends.sql import parse_queries

HERE = Path(__file__).resolve().parent
PG_QUERIES = parse_queries((Path(__file__).parent / "postgres.sql").read_text(encoding="utf-8"))


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--runs", type=int, default=3, help="repetitions; the median is reported")
    p.add_argument(
        "--url",
        default=None,
        help="database URL (default: a fresh SQLite file in a temporary directory per run; "
        "with a postgresql:// URL, a fresh schema per run, dropped afterwards)",
    )
    p.add_argument(
        "--synchronous",
        default="NORMAL",
        choices=["NORMAL", "FULL"],
        help="SQLite synchronous mode",
    )
    return p


def is_redis(url: str | None) -> bool:
    return str(url).startswith(("redis:", "rediss:"))


def is_postgres(url: str | None) -> bool:
    return bool(url) and not str(url).startswith("sqlite:") and not is_redis(url)


def spawn_worker(
    app: Conveyor, concurrency: int, synchronous: str | None = None
) -> subprocess.Popen[bytes]:
    """A worker of bench_app's tasks in another process, on ``app``'s database (its schema or
    key prefix), its stderr silenced."""
    env = {
        **os.environ,
        "CONVEYOR_BENCH_URL": app.settings.url,
        "CONVEYOR_POSTGRES_SCHEMA": app.settings.postgres_schema,
        "CONVEYOR_REDIS_PREFIX": app.settings.redis_prefix,
        "PYTHONPATH": str(HERE),
    }
    if synchronous is not None:
        env["CONVEYOR_SQLITE_SYNCHRONOUS"] = synchronous
    code = f"from bench_app import app; app.run_worker(concurrency={concurrency})"
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=HERE,
        stderr=subprocess.DEVNULL,
    )


def fresh_app(url: str | None, synchronous: str, **overrides: Any) -> tuple[Conveyor, Path]:
    """An empty store: a new SQLite file, or on PostgreSQL a new schema of the database at
    ``url`` (dropped again by ``finish``). ``overrides`` are settings, typed as Conveyor takes
    them (Settings checks them)."""
    folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    if is_postgres(url):
        overrides.setdefault("postgres_schema", f"bench_{secrets.token_hex(6)}")
    if is_redis(url):
        overrides.setdefault("redis_prefix", f"bench_{secrets.token_hex(6)}")
    app = Conveyor(
        url or f"sqlite:///{folder / 'bench.db'}", sqlite_synchronous=synchronous, **overrides
    )
    app.backend  # noqa: B018  (create and migrate outside any timing)
    return app, folder


def finish(app: Conveyor) -> None:
    """Close ``app`` and, on PostgreSQL, drop the schema ``fresh_app`` made for it (on
    Redis, delete the keys of its prefix)."""
    app.close()
    if is_redis(app.settings.url):
        import redis

        from conveyor.backends.redis.connection import key_prefix

        client = redis.Redis.from_url(app.settings.url)
        pattern = key_prefix(app.settings).replace("{", "\\{").replace("}", "\\}") + ":*"
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        client.close()
    if is_postgres(app.settings.url):
        import psycopg
        from psycopg import sql

        query = sql.SQL(PG_QUERIES["drop_schema"]).format(
            schema=sql.Identifier(app.settings.postgres_schema)
        )
        with psycopg.connect(app.settings.url, autocommit=True) as conn:
            conn.execute(query)


def engine(app: Conveyor) -> str:
    """The engine and its durability setting, for the report."""
    if is_redis(app.settings.url):
        import redis

        client = redis.Redis.from_url(app.settings.url, decode_responses=True)
        version = cast("dict[str, Any]", client.info("server"))["redis_version"]
        config: dict[str, str] = {}
        for name in ("appendonly", "appendfsync", "save"):
            config.update(cast("dict[str, str]", client.config_get(name)))
        client.close()
        return (
            f"Redis {version} appendonly={config['appendonly']} "
            f"appendfsync={config['appendfsync']} save={config['save']!r}"
        )
    if not is_postgres(app.settings.url):
        return f"SQLite synchronous={app.settings.sqlite_synchronous}"
    import psycopg

    with psycopg.connect(app.settings.url) as conn:
        row = conn.execute(PG_QUERIES["synchronous_commit"]).fetchone()
        version = conn.info.server_version
    setting = row[0] if row else "?"
    return f"PostgreSQL {version // 10000}.{version % 10000} synchronous_commit={setting}"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def report(
    name: str, values: list[float], unit: str, fmt: Callable[[float], str] | None = None
) -> None:
    fmt = fmt or (lambda v: f"{v:,.0f}")
    median = statistics.median(values)
    runs = ", ".join(fmt(v) for v in values)
    print(f"{name}: {fmt(median)} {unit} (median of {len(values)}: {runs})")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def rate_in_processes(app: Conveyor, workers: int, target: Any, *args: Any) -> float:
    """Items per second of ``workers`` spawned processes (no thread of this one in them), each
    running ``target(settings, *args, ready, out)``: it opens the app's database from
    ``settings``, waits on ``ready`` with the others, works, and puts its count on ``out``.
    Timed from the moment all are ready until every count is in."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(workers + 1)
    out = context.Queue()
    settings = {
        "url": app.settings.url,
        "postgres_schema": app.settings.postgres_schema,
        "redis_prefix": app.settings.redis_prefix,
        "sqlite_synchronous": app.settings.sqlite_synchronous,
    }
    children = [
        context.Process(target=target, args=(settings, *args, ready, out)) for _ in range(workers)
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
