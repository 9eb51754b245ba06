"""``conveyor demo``: a few seconds' tour of Conveyor on a throwaway SQLite file.

The tasks below are an ordinary Conveyor app, so after the demo a real worker can run the jobs
it left behind: ``conveyor --url URL worker --app conveyor.demo:app --burst``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import click

from conveyor.app import Conveyor
from conveyor.cli.output import table
from conveyor.cli.terminal import console, stdout_is_terminal
from conveyor.errors import ConfigurationError
from conveyor.job import TERMINAL_STATES, Job, JobState
from conveyor.retry import Fixed
from conveyor.task import JobSpec
from conveyor.worker import JobContext, Worker

#: The demo's own queues, so that a demo run against a real database touches no other job.
QUEUE = "demo"
REPORTS = "demo-reports"
QUEUES = (QUEUE, REPORTS)
MIN_JOBS = 5
CONCURRENCY = 8
DELAY = 1.0
#: Retries come quickly so the whole tour takes seconds.
FAST = Fixed(0.2)

app = Conveyor()


@app.task(queue=QUEUE, retry=FAST)
def resize_image(image_id: int, width: int = 640) -> dict[str, int]:
    time.sleep(0.02)  # stands in for real work
    return {"image_id": image_id, "width": width}


@app.task(queue=QUEUE, retry=FAST)
async def fetch_page(url: str) -> int:
    await asyncio.sleep(0.05)  # async tasks run on the worker's event loop
    return len(url)


@app.task(queue=QUEUE, retry=FAST, pass_context=True)
def sync_inventory(ctx: JobContext, sku: str) -> str:
    if ctx.attempt == 1:
        raise ConnectionError("inventory service timed out (each first attempt fails)")
    return f"{sku} synced on attempt {ctx.attempt}"


@app.task(queue=REPORTS, retry=FAST, priority="high")
def nightly_report(day: str) -> str:
    return f"report for {day}"


@app.task(queue=QUEUE, retry=FAST, max_attempts=3)
def charge_card(order_id: int) -> None:
    raise ValueError(f"card declined for order {order_id} (this job always fails)")


def plan(total: int) -> list[JobSpec]:
    """Every job but the idempotent report: ``total - 1`` jobs for one ``enqueue_many``."""
    rest = total - 2  # minus the doomed job and the report
    flaky = max(1, rest // 6)
    delayed = max(1, rest // 6)
    async_jobs = max(1, rest // 4)
    quick = rest - flaky - delayed - async_jobs
    levels = ("normal", "low", "normal", "critical")
    specs = [charge_card.job(1001)]
    specs += [sync_inventory.job(f"SKU-{i}") for i in range(flaky)]
    specs += [resize_image.options(delay=DELAY).job(100 + i) for i in range(delayed)]
    specs += [fetch_page.job(f"https://example.com/{i}") for i in range(async_jobs)]
    specs += [
        resize_image.options(priority=levels[i % len(levels)]).job(i, width=320)
        for i in range(quick)
    ]
    return specs


def run(total: int = 40, url: str | None = None, *, timeout: float = 60.0) -> bool:
    """Run the tour; True when every job ended as expected (one dead, the rest succeeded)."""
    if total < MIN_JOBS:
        raise ConfigurationError(f"the demo needs at least {MIN_JOBS} jobs, got {total}")
    if url is None:
        path = Path(tempfile.mkdtemp(prefix="conveyor-demo-")) / "demo.db"
        url = f"sqlite:///{path}"
        click.echo(f"Database: {path} (a new SQLite file; delete its folder when done)")
    else:
        click.echo(f"Database: {url}")
    app.configure(url=url)
    try:
        return _tour(total, url, timeout)
    finally:
        app.close()


def _tour(total: int, url: str, timeout: float) -> bool:
    before = _finished(app.stats())
    specs = plan(total)
    started = time.monotonic()
    app.enqueue_many(specs)
    click.echo(
        f"Enqueued {len(specs)} jobs in one transaction (enqueue_many): "
        f"{_mix(specs)}, some with priorities"
    )
    day = time.strftime("%Y-%m-%d")
    key = f"nightly-report-{day}"
    first = nightly_report.options(idempotency_key=key).enqueue(day)
    again = nightly_report.options(idempotency_key=key).enqueue(day)
    returned = f"job {first.id}" if first.id == again.id else f"jobs {first.id} and {again.id}"
    click.echo(
        f"Enqueued nightly_report twice with idempotency key {key!r}: both returned {returned}"
    )
    click.echo(f"Running a worker (concurrency {CONCURRENCY}) in a background thread ...")
    worker = app.worker(queues=list(QUEUES), concurrency=CONCURRENCY, install_signal_handlers=False)
    failure: list[BaseException] = []
    thread = threading.Thread(
        target=_run_worker, args=(worker, failure), name="conveyor-demo-worker", daemon=True
    )
    thread.start()
    try:
        done = _follow(total, before, thread, timeout)
    finally:
        worker.stop()
        thread.join(timeout=30)
    if failure:
        raise failure[0]
    outcome = _finished_since(before)
    click.echo(f"{'Done' if done else 'Gave up'} after {time.monotonic() - started:.1f}s.\n")
    _report(outcome)
    _explain(url)
    expected = {JobState.SUCCEEDED: total - 1, JobState.DEAD: 1}
    return done and {s: n for s, n in outcome.items() if n} == expected


def _run_worker(worker: Worker, failure: list[BaseException]) -> None:
    try:
        worker.run()
    except BaseException as exc:  # handed to the main thread, which reports it
        failure.append(exc)


def _finished(stats: Mapping[str, Mapping[JobState, int]]) -> dict[JobState, int]:
    """Jobs in a terminal state in the demo's queues, by state."""
    counts = dict.fromkeys(TERMINAL_STATES, 0)
    for queue in QUEUES:
        for state, count in stats.get(queue, {}).items():
            if state in counts:
                counts[state] += count
    return counts


def _finished_since(before: Mapping[JobState, int]) -> dict[JobState, int]:
    return {state: n - before.get(state, 0) for state, n in _finished(app.stats()).items()}


def _follow(
    total: int, before: Mapping[JobState, int], thread: threading.Thread, timeout: float
) -> bool:
    """Show progress until every demo job is finished; False on timeout or a dead worker.
    A bar on a terminal; elsewhere one line at the end."""
    deadline = time.monotonic() + timeout
    finished = 0
    with _bar(total) as advance:
        while time.monotonic() < deadline and thread.is_alive():
            finished = min(sum(_finished_since(before).values()), total)
            advance(finished)
            if finished >= total:
                break
            thread.join(0.1)  # wait a moment, or less if the worker died
    if not stdout_is_terminal():
        click.echo(f"Jobs finished: {finished}/{total}")
    return finished >= total


@contextlib.contextmanager
def _bar(total: int) -> Iterator[Callable[[int], None]]:
    """``advance(done)`` moves rich's bar on a terminal, and does nothing elsewhere."""
    if not stdout_is_terminal():
        yield lambda done: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("Jobs finished"), BarColumn(), MofNCompleteColumn(), console=console()
    ) as progress:
        task = progress.add_task("demo", total=total)
        yield lambda done: progress.update(task, completed=done)


def _mix(specs: list[JobSpec]) -> str:
    names = {
        resize_image.name: "images",
        fetch_page.name: "async fetches",
        sync_inventory.name: "flaky (fail once)",
        charge_card.name: "always failing",
    }
    counts: dict[str, int] = {}
    for spec in specs:
        label = names[spec.task.name]
        if spec.options.delay:
            label = f"delayed {DELAY:g}s"
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{n} {label}" for label, n in counts.items())


def _report(outcome: Mapping[JobState, int]) -> None:
    states = (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED)
    rows = [(state, outcome.get(state, 0)) for state in states]
    click.echo(table(("STATE", "JOBS"), rows, right={"JOBS"}))
    retried = [
        job
        for job in app.list_jobs(state=JobState.SUCCEEDED, task=sync_inventory.name, limit=1000)
        if job.attempts > 1
    ]
    if retried:
        click.echo(f"\n{len(retried)} flaky job(s) failed once, then succeeded on a retry.")
    for job in app.dead_letters(queue=QUEUE, task=charge_card.name, limit=1):
        _describe_dead(job)


def _describe_dead(job: Job) -> None:
    click.echo(
        f"Job {job.id} ({job.task}) is in the dead-letter queue after {job.attempts} "
        f"attempts: {job.dead_reason}"
    )


def _explain(url: str) -> None:
    base = f"conveyor --url {shlex.quote(url)}"
    click.echo("\nNext, try:")
    for command in (
        "stats",
        "jobs list --limit 10",
        "dlq list",
        "dlq requeue --all --yes",
        "worker --app conveyor.demo:app --burst",
    ):
        click.echo(f"  {base} {command}")
