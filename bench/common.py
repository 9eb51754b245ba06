"""Shared helpers for the benchmark workloads of shared/BENCH.md."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from conveyor import Conveyor


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--runs", type=int, default=3, help="repetitions; the median is reported")
    p.add_argument(
        "--url",
        default=None,
        help="database URL (default: a fresh SQLite file in a temporary directory per run)",
    )
    p.add_argument(
        "--synchronous",
        default="NORMAL",
        choices=["NORMAL", "FULL"],
        help="SQLite synchronous mode",
    )
    return p


def fresh_app(url: str | None, synchronous: str, **overrides: object) -> tuple[Conveyor, Path]:
    folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    app = Conveyor(
        url or f"sqlite:///{folder / 'bench.db'}", sqlite_synchronous=synchronous, **overrides
    )
    return app, folder


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
