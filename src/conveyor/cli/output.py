"""Human output (tables drawn by rich on a terminal, plain columns elsewhere; field lists)
and JSON output."""

from __future__ import annotations

import json
import shutil
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from conveyor.job import Job, JobState
from conveyor.worker_info import WorkerInfo, WorkerState

from .core import echo_json as echo_json  # the commands' JSON output, kept where a worker finds it
from .terminal import render, stdout_is_terminal

NOTE_WIDTH = 60


def utc(ts: float | None) -> str:
    if ts is None:
        return "-"
    try:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError):
        # Out of datetime's range: stored before Conveyor bounded run_at, still shown.
        return f"{ts:.0f} (UNIX seconds)"


def cell(value: object) -> str:
    """One line of printable text: names and messages come from the database and may hold
    newlines or terminal escape sequences."""
    if value is None:
        return "-"
    return printable(" ".join(str(value).split()))


def printable(text: str) -> str:
    return "".join("?" if unicodedata.category(ch).startswith("C") else ch for ch in text)


def shorten(text: str, width: int = NOTE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


#: Free-text columns that, on a terminal, may be cut short (…) to fit the window. The others
#: (ids, names, numbers, times) are never cut: a worker id must stay whole to be typed.
SHRINKABLE = frozenset({"NOTE", "REASON"})


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: Collection[str] = ()
) -> str:
    """A table for ``click.echo``; the columns named in ``right`` (numbers) align right.

    On a terminal, rich draws it (bold headers under a rule; free text cut to fit the
    window). Off a terminal, the same table as plain columns two spaces apart, one line per
    row, nothing cut: what scripts have always parsed."""
    terminal = stdout_is_terminal()
    return render(drawn_table(headers, rows, right=right, terminal=terminal), terminal=terminal)


def drawn_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    right: Collection[str] = (),
    terminal: bool,
) -> Any:
    """The rich Table of ``table`` (for live views, which lay several out together)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    cells = [[cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    if terminal:
        _fit(headers, widths, shutil.get_terminal_size().columns)
    drawn = Table(
        box=box.SIMPLE_HEAD if terminal else None,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        header_style="bold" if terminal else "",
    )
    for header, width in zip(headers, widths, strict=True):
        drawn.add_column(
            header,
            justify="right" if header in right else "left",
            no_wrap=True,
            overflow="ellipsis" if terminal and header in SHRINKABLE else "fold",
            width=width,
        )
    for row in cells:
        # Text, not markup: a task named "[red]x" is shown as typed.
        drawn.add_row(*map(Text, row))
    # What render() must give it: every column whole (a terminal wraps what is wider).
    drawn.min_width = sum(widths) + (TERMINAL_GAP if terminal else 2) * (len(widths) - 1)
    return drawn


#: Spaces between columns on a terminal: the padding and the (blank) column rule.
TERMINAL_GAP = 3
#: The least a free-text column is cut to.
MIN_SHRUNK = 12


def _fit(headers: Sequence[str], widths: list[int], window: int) -> None:
    """Cut the free-text columns so that the table fits ``window``, if cutting them can."""
    total = sum(widths) + TERMINAL_GAP * (len(widths) - 1)
    for i, header in enumerate(headers):
        if total <= window:
            return
        if header in SHRINKABLE and widths[i] > MIN_SHRUNK:
            cut = min(total - window, widths[i] - max(MIN_SHRUNK, len(header)))
            widths[i] -= cut
            total -= cut


def fields(pairs: Iterable[tuple[str, object]]) -> str:
    pairs = list(pairs)
    width = max(len(name) for name, _ in pairs) + 1
    return "\n".join(f"{name + ':':<{width}} {cell(value)}" for name, value in pairs)


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


# --- jobs ---------------------------------------------------------------------------------

JOB_HEADERS = ("ID", "STATE", "TASK", "QUEUE", "PRI", "TRIES", "RUN AT (UTC)", "NOTE")
DEAD_HEADERS = ("ID", "TASK", "QUEUE", "TRIES", "DIED (UTC)", "REASON")
NUMERIC = frozenset({"ID", "PRI", "TRIES"})


def tries(job: Job) -> str:
    return f"{job.attempts}/{job.max_attempts}"


def note(job: Job) -> str:
    """Why a job is where it is, when that is not obvious from its state."""
    if job.dead_reason:
        return job.dead_reason
    if job.cancel_requested and job.state is JobState.RUNNING:
        return "cancel requested"
    error = job.last_error
    if error is not None and job.state is not JobState.SUCCEEDED:
        return f"{error.type}: {error.message}" if error.message else error.type
    return ""


def jobs_table(jobs: Sequence[Job]) -> str:
    rows = [
        (j.id, j.state, j.task, j.queue, j.priority, tries(j), utc(j.run_at), shorten(note(j)))
        for j in jobs
    ]
    return table(JOB_HEADERS, rows, right=NUMERIC)


def dead_table(jobs: Sequence[Job]) -> str:
    rows = [
        (j.id, j.task, j.queue, tries(j), utc(j.finished_at), shorten(j.dead_reason or ""))
        for j in jobs
    ]
    return table(DEAD_HEADERS, rows, right=NUMERIC)


def job_details(job: Job) -> str:
    pairs: list[tuple[str, object]] = [
        ("id", job.id),
        ("task", job.task),
        ("queue", job.queue),
        ("state", job.state),
        ("priority", job.priority),
        ("attempts", f"{tries(job)} (lost runs: {job.lost_runs})"),
        ("run at", f"{utc(job.run_at)} UTC"),
        ("created", f"{utc(job.created_at)} UTC"),
        ("started", f"{utc(job.started_at)} UTC" if job.started_at else None),
        ("finished", f"{utc(job.finished_at)} UTC" if job.finished_at else None),
        ("idempotency key", job.idempotency_key),
        ("timeout", None if job.timeout is None else f"{job.timeout:g}s"),
        ("args", compact_json(job.args)),
        ("kwargs", compact_json(job.kwargs)),
    ]
    if job.state is JobState.RUNNING:
        pairs += [
            ("worker", job.worker_id),
            ("lease expires", f"{utc(job.lease_expires_at)} UTC"),
            ("cancel requested", "yes" if job.cancel_requested else "no"),
        ]
    optional = [
        ("result", job.result, job.state is JobState.SUCCEEDED),
        ("progress", job.progress, job.progress is not None),
        ("checkpoint", job.checkpoint, job.checkpoint is not None),
    ]
    pairs += [(name, compact_json(value)) for name, value, shown in optional if shown]
    if job.dead_reason:
        pairs.append(("dead reason", job.dead_reason))
    lines = [fields(pairs)]
    if job.errors:
        lines.append("errors:")
        lines += [
            f"  attempt {e.attempt}  {utc(e.at)} UTC  {cell(e.type)}: {cell(e.message)}"
            for e in job.errors
        ]
        last = job.errors[-1]
        if last.traceback:
            lines.append(f"traceback of attempt {last.attempt}:")
            lines += [f"  {printable(line)}" for line in last.traceback.rstrip().splitlines()]
    return "\n".join(lines)


def stats_table(stats: Mapping[str, Mapping[JobState, int]]) -> str:
    """One row per queue; only the states that occur get a column."""
    states = [s for s in JobState if any(counts.get(s) for counts in stats.values())]
    headers = ["QUEUE", *(s.value.upper() for s in states), "TOTAL"]
    rows: list[list[object]] = []
    totals = [0] * (len(states) + 1)
    for queue in sorted(stats):
        counts = [stats[queue].get(s, 0) for s in states]
        counts.append(sum(counts))
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        rows.append([queue, *counts])
    if len(rows) > 1:
        rows.append(["(all)", *totals])
    return table(headers, rows, right=set(headers[1:]))


def stats_json(stats: Mapping[str, Mapping[JobState, int]]) -> dict[str, dict[str, int]]:
    # Every state is present, zero or not, so scripts can index without guarding.
    return {queue: {s.value: stats[queue].get(s, 0) for s in JobState} for queue in sorted(stats)}


# --- workers ------------------------------------------------------------------------------

WORKER_HEADERS = (
    "ID",
    "HOST",
    "PID",
    "QUEUES",
    "CONC",
    "STARTED (UTC)",
    "LAST BEAT",
    "HEALTH",
    "STATE",
)


def ago(seconds: float) -> str:
    """How long ago, briefly: 0.4s ago, 12s ago, 3m05s ago, 2h10m ago, 3d04h ago."""
    if seconds < 10:
        return f"{seconds:.1f}s ago"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s ago"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s ago"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m ago"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h ago"


def worker_state(worker: WorkerInfo) -> str:
    if worker.stop_requested and worker.state is WorkerState.RUNNING:
        return "stop requested"
    return worker.state.value


def workers_table(workers: Sequence[WorkerInfo]) -> str:
    rows = [
        (
            w.id,
            w.host,
            w.pid,
            "all" if w.queues is None else ",".join(w.queues),
            w.concurrency,
            utc(w.started_at),
            ago(w.last_beat_age),
            w.health,
            worker_state(w),
        )
        for w in workers
    ]
    return table(WORKER_HEADERS, rows, right={"PID", "CONC"})


# --- queues -------------------------------------------------------------------------------


def queues_table(stats: Mapping[str, Mapping[JobState, int]], caps: Mapping[str, int]) -> str:
    """One row per queue: its cap on running jobs, then its jobs by state (the states that
    occur, and always running, which the cap bounds)."""
    states = [
        s
        for s in JobState
        if s is JobState.RUNNING or any(counts.get(s) for counts in stats.values())
    ]
    headers = ["QUEUE", "CAP", *(s.value.upper() for s in states), "TOTAL"]
    rows: list[list[object]] = []
    for queue in sorted({*stats, *caps}):
        counts = [stats.get(queue, {}).get(s, 0) for s in states]
        rows.append([queue, caps.get(queue, "-"), *counts, sum(counts)])
    return table(headers, rows, right=set(headers[1:]))


def queues_json(
    stats: Mapping[str, Mapping[JobState, int]], caps: Mapping[str, int]
) -> dict[str, dict[str, Any]]:
    return {
        queue: {
            "max_running": caps.get(queue),
            "jobs": {s.value: stats.get(queue, {}).get(s, 0) for s in JobState},
        }
        for queue in sorted({*stats, *caps})
    }
