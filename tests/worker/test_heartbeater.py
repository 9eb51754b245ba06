"""The heartbeat process on its own, on every engine: it extends the leases of the runs it is
told about and of no other, reports a lost run and a cancel request once each, hears of a cancel
request long before its next beat, beats the worker's row in the registry and passes on a stop
asked there, long before its next beat too, and is replaced when it dies."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor, JobContext
from conveyor.backends.base import Backend, ClaimedJob, LeaseReport, Outcome, OutcomeKind
from conveyor.errors import BackendUnavailable
from conveyor.job import JobState
from conveyor.worker.heartbeater import Heartbeater, Launched, launch
from conveyor.worker.liveness import ProcessState, process_state
from conveyor.worker.registry import Registry
from conveyor.worker_info import WorkerState
from tests.support import FACTORIES, enabled_backends, new_job
from tests.worker.harness import wait_for

pytestmark = pytest.mark.slow

LEASE = 2.0
INTERVAL = 0.2


class Reports:
    """What the heartbeater handed on (from its reader thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: list[LeaseReport] = []
        self.stops = threading.Event()

    def __call__(self, report: LeaseReport) -> None:
        with self._lock:
            self._reports.append(report)

    def stop_requested(self) -> None:
        self.stops.set()

    def lost(self) -> list[str]:
        with self._lock:
            return [token for r in self._reports for token in sorted(r.lost)]

    def cancel_requested(self) -> list[str]:
        with self._lock:
            return [token for r in self._reports for token in sorted(r.cancel_requested)]


@pytest.fixture(params=enabled_backends())
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh store on the database's own clock, the one the heartbeat process uses."""
    with FACTORIES[request.param](tmp_path, None, {}) as backend:
        yield backend


Start = Callable[..., Heartbeater]


@pytest.fixture
def start(store: Backend) -> Iterator[Start]:
    """``start(reports, interval=..., lease=...)``: a running Heartbeater of worker "w1", which
    is this process, registered as a worker starting up registers."""
    started: list[Heartbeater] = []

    def make(
        reports: Reports, interval: float = INTERVAL, lease: float = LEASE, *, early: bool = False
    ) -> Heartbeater:
        """``early``: its heartbeat process launched before the heartbeater exists, as a
        worker launches it before it opens its store."""
        launched = launch(store.settings.url) if early else None
        registry = Registry(store, worker_id="w1", queues=None, concurrency=4, interval=interval)
        registry.start()
        heartbeater = Heartbeater(
            store,
            registry.registration,
            reports,
            reports.stop_requested,
            lease=lease,
            launched=launched,
        )
        started.append(heartbeater)
        heartbeater.start()
        return heartbeater

    yield make
    for heartbeater in started:
        heartbeater.stop()


def claim(store: Backend, n: int, lease: float = LEASE) -> list[ClaimedJob]:
    store.enqueue_many([new_job() for _ in range(n)])
    runs = store.claim("w1", None, n, lease)
    assert len(runs) == n
    return runs


def lease_of(store: Backend, run: ClaimedJob) -> float:
    expires = store.get(run.id).lease_expires_at
    assert expires is not None
    return expires


def wait_for_beat(store: Backend, run: ClaimedJob) -> None:
    before = lease_of(store, run)
    wait_for(lambda: lease_of(store, run) > before, f"a beat to extend the lease of job {run.id}")


def test_held_leases_are_extended_and_a_released_one_lapses(store: Backend, start: Start) -> None:
    reports = Reports()
    heartbeater = start(reports)
    kept, dropped = claim(store, 2)
    for run in (kept, dropped):
        heartbeater.hold([run.lease_token])
    wait_for_beat(store, kept)
    wait_for_beat(store, dropped)

    heartbeater.release([dropped.lease_token])
    rescued: list[int] = []

    def swept() -> bool:
        rescued.extend(store.rescue_expired().requeued)
        return bool(rescued)

    wait_for(swept, "the released run's lease to run out")
    assert rescued == [dropped.id]
    assert store.get(kept.id).state is JobState.RUNNING
    wait_for_beat(store, kept)
    assert reports.lost() == [] and reports.cancel_requested() == []


def test_holding_never_waits_for_the_heartbeat_process(store: Backend, start: Start) -> None:
    """Holds reach the heartbeat process through a writer thread: a heartbeat process that
    reads nothing for a while (still importing, or stopped here) cannot hold up the worker,
    and gets every change once it reads again."""
    reports = Reports()
    heartbeater = start(reports)
    wait_for(lambda: heartbeater.pid is not None, "the heartbeat process to start")
    pid = heartbeater.pid
    assert pid is not None
    [run] = claim(store, 1)
    held = threading.Event()

    def hold_many() -> None:
        # Far more than a pipe holds (64 KiB): unknown tokens, then the run's own.
        heartbeater.hold([f"unknown-{i:06d}-{'x' * 40}" for i in range(5000)])
        heartbeater.hold([run.lease_token])
        held.set()

    os.kill(pid, signal.SIGSTOP)
    try:
        threading.Thread(target=hold_many, daemon=True).start()
        assert held.wait(5.0), "hold() waited for a heartbeat process that reads nothing"
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for_beat(store, run)


def test_a_lost_run_and_a_cancel_request_are_each_reported_once(
    store: Backend, start: Start
) -> None:
    reports = Reports()
    heartbeater = start(reports)
    finished, asked, other = claim(store, 3)
    for run in (finished, asked, other):
        heartbeater.hold([run.lease_token])
    wait_for_beat(store, other)

    # Another run took it, as far as this worker can tell: its token no longer owns the job.
    store.finish_many([Outcome(finished.id, finished.lease_token, OutcomeKind.SUCCEEDED)])
    store.cancel(asked.id)
    wait_for(
        lambda: (
            reports.lost() == [finished.lease_token]
            and reports.cancel_requested() == [asked.lease_token]
        ),
        "the lost run and the cancel request to be reported",
    )
    for _ in range(3):
        wait_for_beat(store, other)
    assert reports.lost() == [finished.lease_token]
    assert reports.cancel_requested() == [asked.lease_token]


def test_a_cancel_request_is_heard_long_before_the_next_beat(store: Backend, start: Start) -> None:
    reports = Reports()
    heartbeater = start(reports, interval=60.0, lease=120.0)
    [run] = claim(store, 1, lease=120.0)
    heartbeater.hold([run.lease_token])
    wait_for_beat(store, run)  # its first beat comes at once; the next one in a minute

    store.cancel(run.id)
    wait_for(
        lambda: reports.cancel_requested() == [run.lease_token],
        "the cancel request to be heard between beats",
        timeout=30.0,
    )


def _heartbeater_of(store: Backend, launched: Launched, *, registered: bool) -> Heartbeater:
    """A heartbeater of worker w1 that adopts the heartbeat process ``launched``."""
    registry = Registry(store, worker_id="w1", queues=None, concurrency=4, interval=INTERVAL)
    if registered:
        registry.start()
    reports = Reports()
    return Heartbeater(
        store,
        registry.registration,
        reports,
        reports.stop_requested,
        lease=LEASE,
        launched=launched,
    )


def test_a_heartbeat_process_launched_early_beats_for_the_heartbeater(
    store: Backend, start: Start
) -> None:
    launched = launch(store.settings.url)
    heartbeater = _heartbeater_of(store, launched, registered=True)
    heartbeater.start()
    try:
        [run] = claim(store, 1)
        heartbeater.hold([run.lease_token])
        wait_for_beat(store, run)
        assert heartbeater.pid == launched.process.pid
    finally:
        heartbeater.stop()
    assert process_state(launched.process.pid) is ProcessState.GONE


def test_a_heartbeat_process_launched_for_a_heartbeater_never_started_ends_with_it(
    store: Backend,
) -> None:
    """A worker that fails to start stops its heartbeater without having started it."""
    launched = launch(store.settings.url)
    heartbeater = _heartbeater_of(store, launched, registered=False)
    heartbeater.stop()
    assert process_state(launched.process.pid) is ProcessState.GONE
    assert heartbeater.pid is None


@pytest.mark.parametrize("early", [False, True], ids=["spawned", "launched_early"])
def test_a_killed_heartbeat_process_is_replaced(
    store: Backend, start: Start, caplog: pytest.LogCaptureFixture, early: bool
) -> None:
    heartbeater = start(Reports(), early=early)
    [run] = claim(store, 1)
    heartbeater.hold([run.lease_token])
    wait_for_beat(store, run)

    first = heartbeater.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: heartbeater.pid not in (None, first), "another heartbeat process")
    wait_for_beat(store, run)
    assert process_state(first) is ProcessState.GONE
    assert f"heartbeat process {first} exited" in caplog.text


def test_stop_ends_the_heartbeat_process(store: Backend, start: Start) -> None:
    heartbeater = start(Reports())
    [run] = claim(store, 1)
    heartbeater.hold([run.lease_token])
    wait_for_beat(store, run)
    pid = heartbeater.pid
    assert pid is not None

    heartbeater.stop()
    assert process_state(pid) is ProcessState.GONE
    assert store.get(run.id).state is JobState.RUNNING, "stopping releases no lease"


def test_the_registry_row_is_beaten_and_a_stop_request_is_passed_on(
    store: Backend, start: Start
) -> None:
    reports = Reports()
    heartbeater = start(reports)
    [row] = store.list_workers()
    assert (row.id, row.pid, row.state) == ("w1", os.getpid(), WorkerState.RUNNING)
    wait_for(lambda: store.list_workers()[0].last_beat_at > row.last_beat_at, "a beat of the row")

    assert store.request_worker_stop(["w1"]) == ["w1"]
    assert reports.stops.wait(30), "the stop request was not passed on"
    heartbeater.stopping()
    wait_for(lambda: store.list_workers()[0].state is WorkerState.STOPPING, "the row to say so")


def test_a_stop_request_is_heard_long_before_the_next_beat(store: Backend, start: Start) -> None:
    """Holding no runs, as an idle worker does: only the look at its row can hear it."""
    reports = Reports()
    start(reports, interval=600.0, lease=1200.0)
    [row] = store.list_workers()
    # Its first beat comes at once, the next one in ten minutes.
    wait_for(lambda: store.list_workers()[0].last_beat_at > row.last_beat_at, "the first beat")

    assert store.request_worker_stop(["w1"]) == ["w1"]
    assert reports.stops.wait(30), "the stop request was not heard between beats"


def test_a_worker_on_an_in_memory_database_beats_from_a_thread() -> None:
    """No other process can open an in-memory SQLite database: the heartbeats come from a
    thread of the worker's process instead, and a job outliving its lease keeps it."""
    app = Conveyor("sqlite:///:memory:", lease=LEASE, heartbeat=INTERVAL)

    @app.task(name="outlives_its_lease", pass_context=True)
    def outlives_its_lease(ctx: JobContext) -> None:
        claimed = app.get_job(ctx.job_id).lease_expires_at
        assert claimed is not None
        wait_for(
            lambda: (app.get_job(ctx.job_id).lease_expires_at or 0) > claimed + LEASE,
            "a beat later than the first lease",
        )

    with app:
        job_id = outlives_its_lease.enqueue().id
        app.worker(burst=True, install_signal_handlers=False).run()
        job = app.get_job(job_id)
        assert (job.state, job.attempts, job.lost_runs, job.errors) == (
            JobState.SUCCEEDED,
            1,
            0,
            [],
        )


def pulse_children() -> list[int]:
    """The heartbeat processes this process started that are still there (Linux: /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == os.getpid() and b"conveyor.worker.pulse_main" in command:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_worker_whose_store_cannot_open_leaves_no_heartbeat_process_behind() -> None:
    """The heartbeat process is launched before the store opens (see heartbeater.py)."""
    app = Conveyor("postgresql://postgres@127.0.0.1:1/postgres")
    with pytest.raises(BackendUnavailable):
        app.worker(install_signal_handlers=False).run()
    assert pulse_children() == []
