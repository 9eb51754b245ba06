"""``conveyor worker --processes N``: a supervisor runs N workers, replaces one that dies, backs
off when one keeps dying, and stops them all on SIGTERM (a second signal kills them)."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import JobState
from conveyor.worker.supervisor import Supervisor
from tests.worker.harness import REPO_ROOT, WorkerProcess, Workers, World, wait_for
from tests.worker.test_isolation import pid_gone

pytestmark = pytest.mark.slow

STARTED = re.compile(r"supervisor: worker \d+ started, pid (\d+)")
READY = re.compile(r"worker [^:\s]+:(\d+):\w+ ready")


class SupervisorProcess(WorkerProcess):
    def started_pids(self) -> list[int]:
        return [int(pid) for pid in STARTED.findall(self.log())]

    def ready_pids(self) -> set[int]:
        return {int(pid) for pid in READY.findall(self.log())}

    def wait_ready_workers(self, count: int) -> list[int]:
        """Wait until ``count`` workers were started and said they are ready; their pids."""

        def ready() -> list[int] | None:
            started = self.started_pids()
            if len(started) >= count and set(started[:count]) <= self.ready_pids():
                return started[:count]
            if not self.alive():
                raise AssertionError(f"the supervisor exited:\n{self.log()}")
            return None

        return wait_for(ready, f"{count} workers to be ready", on_timeout=self.log)


@pytest.fixture
def supervisors(workers: Workers) -> Iterator[list[SupervisorProcess]]:
    started: list[SupervisorProcess] = []
    yield started
    # The workers have process groups of their own: a killed supervisor would leave them.
    for proc in started:
        proc.kill()
        for pid in proc.started_pids():
            if not pid_gone(pid):
                os.kill(pid, signal.SIGKILL)


def start_supervisor(
    world: World, workers: Workers, supervisors: list[SupervisorProcess], *options: str
) -> SupervisorProcess:
    argv = [sys.executable, "-m", "conveyor.cli", "worker", "--app", "tests.worker.cli_app:app"]
    stderr_path = world.tmp / f"supervisor-{len(supervisors)}.stderr"
    env = {
        **os.environ,
        **world.settings_env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    with stderr_path.open("wb") as stderr:
        popen = subprocess.Popen(
            [*argv, *options],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
    proc = SupervisorProcess("supervisor", popen, stderr_path, time.time())
    workers.procs.append(proc)  # its log goes into the report of a failed test
    supervisors.append(proc)
    return proc


def test_a_killed_worker_is_replaced_and_sigterm_stops_them_all(
    world: World, workers: Workers, supervisors: list[SupervisorProcess]
) -> None:
    sup = start_supervisor(world, workers, supervisors, "--processes", "2", "--concurrency", "2")
    first, second = sup.wait_ready_workers(2)

    os.kill(first, signal.SIGKILL)
    sup.wait_log(f"(pid {first}) died (killed by SIGKILL), restarting")
    replacement = sup.wait_ready_workers(3)[2]
    assert replacement not in (first, second)
    wait_for(lambda: pid_gone(first), "the killed worker to be reaped")

    # Four jobs that each hold a slot until released: two slots per worker, so both run them.
    release = world.tmp / "release"
    hold = world.app.get_task("sample.hold")
    ids = [job.id for job in world.app.enqueue_many([hold.job(str(release)) for _ in range(4)])]
    wait_for(lambda: len(world.effects("start")) == 4, "the four jobs to start")
    release.touch()
    wait_for(lambda: world.all_in(ids, JobState.SUCCEEDED), "the jobs to succeed")
    assert {job.result for job in world.jobs(ids)} == {second, replacement}

    sup.send(signal.SIGTERM)
    assert sup.wait_exit() == 0, sup.log()
    assert pid_gone(second) and pid_gone(replacement)
    assert sup.log().count("worker stopped: ") == 2
    assert "conveyor.supervisor: all workers exited\n" in sup.log()


def test_processes_1_supervises_its_one_worker(
    world: World, workers: Workers, supervisors: list[SupervisorProcess]
) -> None:
    """Issue 9: ``--processes 1`` restarts the worker that dies, like any other count."""
    sup = start_supervisor(world, workers, supervisors, "--processes", "1")
    (first,) = sup.wait_ready_workers(1)
    assert first != sup.popen.pid

    os.kill(first, signal.SIGKILL)
    sup.wait_log(f"(pid {first}) died (killed by SIGKILL), restarting")
    replacement = sup.wait_ready_workers(2)[1]
    quick = world.app.get_task("sample.quick")
    ids = [job.id for job in world.app.enqueue_many([quick.job(n) for n in range(5)])]
    wait_for(lambda: world.all_in(ids, JobState.SUCCEEDED), "the replacement to run the jobs")

    sup.send(signal.SIGTERM)
    assert sup.wait_exit() == 0, sup.log()
    assert pid_gone(replacement)


def test_a_second_signal_kills_the_workers(
    world: World, workers: Workers, supervisors: list[SupervisorProcess]
) -> None:
    hold = world.app.get_task("sample.hold")
    never = str(world.tmp / "never")
    world.app.enqueue_many([hold.job(never) for _ in range(2)])
    sup = start_supervisor(
        world, workers, supervisors, "--processes", "2", "--concurrency", "1", "--grace", "30"
    )
    pids = sup.wait_ready_workers(2)
    wait_for(lambda: len(world.effects("start")) == 2, "both workers to run a job")

    sup.send(signal.SIGTERM)
    wait_for(lambda: sup.log().count("graceful shutdown") == 2, "both workers to start stopping")
    assert sup.alive(), "the workers wait for their jobs for up to 30 s"
    sup.send(signal.SIGTERM)
    assert sup.wait_exit(timeout=10) == 128 + signal.SIGTERM
    assert all(pid_gone(pid) for pid in pids)
    assert "killing every worker" in sup.log()


def test_burst_workers_that_finish_are_not_restarted(
    world: World, workers: Workers, supervisors: list[SupervisorProcess]
) -> None:
    quick = world.app.get_task("sample.quick")
    ids = [job.id for job in world.app.enqueue_many([quick.job(n) for n in range(50)])]
    sup = start_supervisor(world, workers, supervisors, "--processes", "2", "--burst")
    assert sup.wait_exit() == 0, sup.log()
    assert world.all_in(ids, JobState.SUCCEEDED)
    assert len(sup.started_pids()) == 2


def test_a_bad_app_fails_once_instead_of_crash_looping(
    world: World, workers: Workers, supervisors: list[SupervisorProcess]
) -> None:
    sup = start_supervisor(
        world, workers, supervisors, "--processes", "2", "--app", "tests.worker.missing:app"
    )
    assert sup.wait_exit() == 2
    assert "no module named 'tests.worker.missing'" in sup.log()
    assert sup.started_pids() == []


def test_a_crash_loop_backs_off_up_to_its_cap() -> None:
    supervisor = Supervisor(
        [sys.executable, "-c", "import sys; sys.exit(3)"],
        1,
        min_backoff=0.1,
        max_backoff=0.4,
        install_signal_handlers=False,
    )
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(supervisor.run()), daemon=True)
    thread.start()
    wait_for(lambda: len(supervisor.starts) >= 6, "six starts")
    supervisor.stop()
    thread.join(10)
    # 0 if the stop found the slot waiting to restart, 1 if the worker failed during it.
    assert codes in ([0], [1])

    times = [at for _, _, at in supervisor.starts]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # Each wait doubles from 0.1 s and stays at the 0.4 s cap (plus the time a child takes to
    # start and fail, which only lengthens the gaps).
    for gap, backoff in zip(gaps, [0.1, 0.2, 0.4, 0.4, 0.4], strict=False):
        assert gap >= backoff, gaps
    assert gaps[-1] < 0.4 + 2.0, gaps


#: A worker stand-in: the first one started crashes (exit 3), the others run until SIGTERM and
#: then exit with the status given in argv[2] (0: a clean stop; 1: a failure during the stop).
#: A running one makes the file argv[1] + ".ready" once its SIGTERM handler is in place.
FIRST_CRASHES = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(int(sys.argv[2])))
try:
    os.close(os.open(sys.argv[1], os.O_CREAT | os.O_EXCL))
except FileExistsError:
    open(sys.argv[1] + ".ready", "w").close()
    while True:
        time.sleep(1)
sys.exit(3)
"""


def run_until_one_slot_waits(
    tmp_path: Path, code_on_stop: int
) -> tuple[Supervisor, threading.Thread, list[int]]:
    """Two slots, the first worker crashed and its slot waits a minute to restart it."""
    argv = [sys.executable, "-c", FIRST_CRASHES, str(tmp_path / "crashed"), str(code_on_stop)]
    supervisor = Supervisor(argv, 2, min_backoff=60.0, install_signal_handlers=False)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(supervisor.run()), daemon=True)
    thread.start()
    # Running: started, and past setting its SIGTERM handler (a SIGTERM before that would kill
    # it by the default action, which the supervisor rightly counts as a failed stop).
    wait_for(
        lambda: (
            len(supervisor.waiting) == 1
            and len(supervisor._children) == 1
            and (tmp_path / "crashed.ready").exists()
        ),
        "one slot waiting to restart its crashed worker, the other running",
    )
    return supervisor, thread, codes


def test_a_stop_while_a_slot_waits_to_restart_exits_0(tmp_path: Path) -> None:
    """Issue 14: the crash before the stop is not the stop's failure."""
    supervisor, thread, codes = run_until_one_slot_waits(tmp_path, code_on_stop=0)
    supervisor.stop(signal.SIGTERM)
    thread.join(10)
    assert codes == [0]
    assert len(supervisor.starts) == 2


def test_a_worker_that_fails_during_the_stop_makes_it_exit_1(tmp_path: Path) -> None:
    supervisor, thread, codes = run_until_one_slot_waits(tmp_path, code_on_stop=1)
    supervisor.stop(signal.SIGTERM)
    thread.join(10)
    assert codes == [1]
