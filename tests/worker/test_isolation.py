"""Process isolation (``isolation="process"``): each job runs in a child process of its own, so
a crash, a memory limit, a hard timeout, a cancel or a shutdown ends that child and nothing else.

The outcome tests run burst workers in this process (the children are real processes all the
same); the ones about signals, cancels and dying workers run worker subprocesses.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from pathlib import Path
from typing import Any, cast

import pytest

from conveyor import Conveyor, JobContext, JobState
from conveyor.errors import ConfigurationError
from tests.worker.harness import DEFAULT_LEASE_ENV, Workers, World, wait_for
from tests.worker.test_burst import run_burst

DIED = "conveyor.errors.ChildProcessDied"
JOB_TIMEOUT = "conveyor.errors.JobTimeout"
JOB_CANCELLED = "conveyor.errors.JobCancelled"


def pid_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def top_level(ctx: JobContext) -> None:
    """Importable by name: fine for isolation="process"."""


async def top_level_async() -> None:
    """Coroutines may run in a process too (on a loop of their own there)."""


# --- registration -----------------------------------------------------------------------------


def test_registration_rejects_what_a_child_process_cannot_run(tmp_path: Path) -> None:
    app = Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}")

    def local() -> None: ...

    with pytest.raises(ConfigurationError, match="not importable by name"):
        app.task(isolation="process")(local)
    with pytest.raises(ConfigurationError, match="not importable by name"):
        app.task(name="lam", isolation="process")(lambda: None)
    with pytest.raises(ConfigurationError, match="isolation must be"):
        app.task(isolation="fork")(top_level)
    with pytest.raises(ConfigurationError, match="needs isolation='process'"):
        app.task(memory_limit_mb=100)(top_level)
    # 1.5 is cast to Any: no int, so only a caller mypy does not check can pass it; the runtime
    # check must still refuse it.
    for bad in (0, -1, cast(Any, 1.5), True):
        with pytest.raises(ConfigurationError, match="memory_limit_mb must be"):
            app.task(isolation="process", memory_limit_mb=bad)(top_level)

    with pytest.raises(ConfigurationError, match="cpu_limit_s needs isolation='process'"):
        app.task(cpu_limit_s=10)(top_level)
    for bad in (0, -1, cast(Any, 1.5), True):
        with pytest.raises(ConfigurationError, match="cpu_limit_s must be"):
            app.task(isolation="process", cpu_limit_s=bad)(top_level)

    task = app.task(isolation="process", memory_limit_mb=64, pass_context=True)(top_level)
    assert (task.isolation, task.memory_limit_mb) == ("process", 64)
    task = app.task(name="cpu", isolation="process", cpu_limit_s=10)(top_level)
    assert task.cpu_limit_s == 10
    assert app.task(isolation="process")(top_level_async).is_async
    assert app.task(name="plain")(top_level).isolation == "thread"


# --- outcomes -----------------------------------------------------------------------------------


def test_jobs_run_in_their_own_processes_and_return_results(world: World) -> None:
    app = world.app
    sync_ids = [app.get_task("sample.process_add").enqueue(i, 1).id for i in range(4)]
    async_id = app.get_task("sample.process_add_async").enqueue(2, 3).id
    run_burst(app, concurrency=3)

    jobs = world.jobs([*sync_ids, async_id])
    assert [(j.state, j.attempts) for j in jobs] == [(JobState.SUCCEEDED, 1)] * 5
    assert [j.result["sum"] for j in jobs] == [1, 2, 3, 4, 5]
    pids = {j.result["pid"] for j in jobs}
    assert len(pids) == 5, "one fresh process per job"
    assert os.getpid() not in pids
    # The effects were written from those processes, with the job's context in hand.
    assert {(e.job_id, e.worker_pid, e.attempt) for e in world.effects("done")} == {
        (j.id, j.result["pid"], 1) for j in jobs
    }


def test_crashed_process_is_retried_then_dead_lettered_with_the_reason(world: World) -> None:
    app = world.app
    segfault = app.get_task("sample.crash_segfault").enqueue().id
    exited = app.get_task("sample.crash_exit").enqueue(3).id
    fine = app.get_task("sample.process_add").enqueue(20, 22).id
    worker = run_burst(app, concurrency=3)

    for job_id, reason in ((segfault, "exit code -11 (SIGSEGV)"), (exited, "exit code 3")):
        job = app.get_job(job_id)
        assert (job.state, job.attempts, job.lost_runs) == (JobState.DEAD, 2, 0), job
        assert [(e.attempt, e.type) for e in job.errors] == [(1, DIED), (2, DIED)]
        assert all(e.message.startswith(reason) for e in job.errors), job.errors
        assert job.dead_reason == f"attempts exhausted (2/2): {DIED}: {job.errors[-1].message}"
        assert [e.attempt for e in world.effects("start", job_id)] == [1, 2]
    # Only the children died: the worker ran the other job and finished its burst.
    assert app.get_job(fine).result["sum"] == 42
    assert (worker.counters.succeeded, worker.counters.dead) == (1, 2)


def test_memory_limit_ends_the_job_with_a_memory_error(world: World) -> None:
    hog = world.app.get_task("sample.memory_hog")
    over = hog.enqueue(1000).id
    under = hog.enqueue(50).id
    run_burst(world.app, concurrency=2)

    job = world.app.get_job(over)
    assert (job.state, job.attempts) == (JobState.DEAD, 1)
    assert [e.type for e in job.errors] == ["MemoryError"]
    assert "memory limit exceeded" in job.errors[0].message
    assert "200 MB" in job.errors[0].message
    # The limit leaves room for real work below it.
    job = world.app.get_job(under)
    assert (job.state, job.result) == (JobState.SUCCEEDED, 50 * 1024 * 1024)


def test_cpu_limit_stops_a_busy_loop_with_a_typed_error(world: World) -> None:
    """Issue 9: RLIMIT_CPU in the child; SIGXCPU raises in the task, and a task deaf to it is
    killed a second later, reported the same way."""
    hog = world.app.get_task("sample.cpu_hog")
    stopped = hog.enqueue(False).id
    killed = hog.enqueue(True).id
    fine = world.app.get_task("sample.process_add").enqueue(1, 2).id
    run_burst(world.app, concurrency=3)

    for job_id, how in ((stopped, "(RLIMIT_CPU)"), (killed, "its process was killed (SIGKILL)")):
        job = world.app.get_job(job_id)
        assert (job.state, job.attempts) == (JobState.DEAD, 1), job
        assert [e.type for e in job.errors] == ["conveyor.errors.CPULimitExceeded"]
        message = job.errors[0].message
        assert message.startswith("CPU time limit exceeded (1 s): task sample.cpu_hog"), message
        assert how in message, message
    assert world.app.get_job(fine).result["sum"] == 3


def test_exceptions_cross_the_process_boundary(world: World) -> None:
    raiser = world.app.get_task("sample.process_raise")
    poison = raiser.enqueue("poison").id
    custom = raiser.enqueue("custom").id
    plain = raiser.enqueue("plain").id
    run_burst(world.app, concurrency=3)

    job = world.app.get_job(poison)
    assert (job.state, job.attempts) == (JobState.DEAD, 1), "NonRetryable is still non-retryable"
    assert job.dead_reason is not None and job.dead_reason.startswith("non-retryable error")
    job = world.app.get_job(custom)
    assert [e.type for e in job.errors] == ["tests.worker.sample_app.CustomError"] * 2
    job = world.app.get_job(plain)
    assert [(e.type, e.message) for e in job.errors] == [
        ("ValueError", f"plain failure on attempt {n}") for n in (1, 2)
    ]
    # The traceback shows where the child raised it.
    assert "In the task's process" in job.errors[0].traceback
    assert "in process_raise" in job.errors[0].traceback


def test_context_in_the_child_saves_progress_and_checkpoints(world: World) -> None:
    job_id = world.app.get_task("sample.process_resume").enqueue().id
    run_burst(world.app, concurrency=1)

    job = world.app.get_job(job_id)
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 2)
    first, second = world.effects("start", job_id)
    assert first.data == {"cancelled": False, "last_checkpoint": None}
    assert second.data == {
        "cancelled": False,
        "last_checkpoint": {"step": 1, "pid": first.worker_pid},
    }
    assert job.result == {"attempt": 2, "resumed_from": {"step": 1, "pid": first.worker_pid}}
    assert job.progress == 0.5


def test_hard_timeout_kills_the_process_and_frees_the_slot_at_once(world: World) -> None:
    spin = world.app.get_task("sample.spin").options(timeout=0.3)
    spun = spin.enqueue().id
    after = world.app.get_task("sample.process_add").enqueue(1, 1).id
    started = time.monotonic()
    worker = run_burst(world.app, concurrency=1)
    took = time.monotonic() - started

    job = world.app.get_job(spun)
    assert (job.state, job.attempts) == (JobState.DEAD, 2)
    assert [e.type for e in job.errors] == [JOB_TIMEOUT, JOB_TIMEOUT]
    assert "timeout of 0.3s" in job.errors[0].message
    assert "killed" in job.errors[0].message
    # With one slot, the other job ran as soon as a killed child was gone: two timeouts and a
    # few process starts, nowhere near a lease or a grace period.
    assert world.app.get_job(after).state is JobState.SUCCEEDED
    assert took < 8, f"the burst took {took:.1f}s"
    assert worker.in_flight == 0
    for effect in world.effects("start", spun):
        assert pid_gone(effect.worker_pid), "a timed-out process is still running"


# --- stopping children: cancel, shutdown, a dying worker ------------------------------------------


def started_child(world: World, job_id: int) -> int:
    effect = wait_for(lambda: world.effects("start", job_id), f"job {job_id} to start")[0]
    return effect.worker_pid


@pytest.mark.slow
def test_cancel_kills_a_running_process_within_a_second(world: World, workers: Workers) -> None:
    # The default heartbeat: the worker hears of the request between beats.
    a = workers.start("A", concurrency=2, env=DEFAULT_LEASE_ENV)
    spin = world.app.get_task("sample.spin").enqueue().id
    cooperative = world.app.get_task("sample.process_cooperative").enqueue().id
    spin_pid = started_child(world, spin)
    cooperative_pid = started_child(world, cooperative)
    assert a.pid not in (spin_pid, cooperative_pid)

    for job_id in (spin, cooperative):
        requested = time.monotonic()
        assert world.app.cancel(job_id).cancel_requested
        wait_for(
            functools.partial(world.all_in, [job_id], JobState.CANCELLED),
            f"job {job_id} to be cancelled",
            timeout=10,
        )
        took = time.monotonic() - requested
        print(f"cancel of job {job_id} took {took:.3f}s")
        assert took < 2.0, f"cancel took {took:.2f}s"
        job = world.app.get_job(job_id)
        assert (job.attempts, job.lost_runs) == (1, 0)
        assert [e.type for e in job.errors] == [JOB_CANCELLED]
    # The state says cancelled only once the process is gone.
    assert pid_gone(spin_pid) and pid_gone(cooperative_pid)
    # The cooperative task saw ctx.cancelled in its process and stopped by itself.
    assert [e.job_id for e in world.effects("saw_cancel")] == [cooperative]

    after = world.app.get_task("sample.process_add").enqueue(2, 2).id
    wait_for(lambda: world.app.get_job(after).state is JobState.SUCCEEDED, "a later job to run")
    assert a.alive()


@pytest.mark.slow
def test_shutdown_past_the_grace_period_kills_the_process_and_puts_the_job_back(
    world: World, workers: Workers
) -> None:
    job_id = world.app.get_task("sample.spin").enqueue().id
    a = workers.start("A", concurrency=2, grace=0.5)
    child = started_child(world, job_id)

    a.send(signal.SIGTERM)
    assert a.wait_exit() == 0
    assert "still running after the grace period" in a.log()
    assert "Traceback" not in a.log()
    job = world.app.get_job(job_id)
    assert (job.state, job.attempts, job.lost_runs, job.errors) == (JobState.QUEUED, 0, 0, [])
    wait_for(lambda: pid_gone(child), "the job's process to be gone", timeout=5)


@pytest.mark.slow
def test_a_killed_worker_leaves_no_process_running(world: World, workers: Workers) -> None:
    job_id = world.app.get_task("sample.spin").enqueue().id
    a = workers.start("A", concurrency=2)
    child = started_child(world, job_id)

    a.kill()
    wait_for(lambda: pid_gone(child), "the orphaned process to exit", timeout=5)


@pytest.mark.slow
def test_children_ignore_signals_their_worker_did_not_send(world: World, workers: Workers) -> None:
    """A terminal's Ctrl-C reaches every process of the group, children included: they ignore
    it, and the worker's own graceful shutdown decides what becomes of their jobs."""
    job_id = world.app.get_task("sample.process_cooperative").enqueue().id
    a = workers.start("A", concurrency=2, grace=30)
    child = started_child(world, job_id)

    os.kill(child, signal.SIGINT)
    os.kill(child, signal.SIGTERM)  # not from the worker: ignored as well
    a.send(signal.SIGINT)
    a.wait_log("graceful shutdown")
    # The task is cooperative but nobody asked it to stop: it runs on through the grace period.
    after = world.app.get_task("sample.process_add").enqueue(1, 1).id
    assert not pid_gone(child)
    assert world.app.get_job(job_id).state is JobState.RUNNING
    a.send(signal.SIGTERM)  # the second signal: the worker exits at once
    a.wait_exit()
    wait_for(lambda: pid_gone(child), "the job's process to exit with its worker", timeout=5)
    assert world.app.get_job(after).state is JobState.QUEUED
