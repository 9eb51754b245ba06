"""A step of the machine's wall clock under a busy SQLite worker (issue 14, point 5).

Every process on one SQLite file runs on one machine and reads the same wall clock, so the real
fault is a *step* of that clock (NTP, a VM resume) seen by all of them at once. Real processes,
real clocks, one hook: tests/chaos/wallstep/sitecustomize.py adds the seconds written in a file
to ``time.time()`` of every process started with it -- the worker, its heartbeat process and a
sweeper process -- while their monotonic and boot clocks run on untouched.

Before leases were measured on the boot clock, a step of 300 s forward expired every healthy
lease and declared every beating worker dead at the next sweep: their jobs were rescued and
run again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conveyor import JobState
from tests.worker.harness import REPO_ROOT, Workers, World, wait_for

STEP = 300.0
HOOK = Path(__file__).resolve().parent / "wallstep"


def sweep(world: World, env: dict[str, str]) -> dict[str, list[object]]:
    """One maintenance sweep by a process of its own, on the machine's (stepped) clocks."""
    found = subprocess.run(
        [sys.executable, "-m", "tests.chaos.clock_sweeper", world.url],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, list[object]] = json.loads(found.stdout)
    return result


def test_a_wall_clock_step_forward_rescues_no_healthy_job(
    world: World, workers: Workers, tmp_path: Path
) -> None:
    """Four jobs run on a healthy worker; the wall clock of every process jumps 300 s forward.
    A sweep right after the step, and the worker's own sweeps for longer than a lease after it,
    rescue nothing and declare no worker dead; each job runs once and succeeds on its first
    attempt. A job scheduled 200 s ahead becomes due at the step: run_at is wall time."""
    step_file = tmp_path / "wall-step"
    step_file.write_text("0")
    env = {
        "CONVEYOR_TEST_WALL_STEP": str(step_file),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(HOOK), str(REPO_ROOT), os.environ.get("PYTHONPATH")])
        ),
    }
    release = tmp_path / "release"
    hold = world.app.get_task("sample.hold")
    held = [hold.enqueue(str(release)).id for _ in range(4)]
    later = world.app.get_task("sample.add").options(delay=200.0).enqueue(2, 3).id
    worker = workers.start("A", concurrency=5, env=env)
    wait_for(lambda: len(world.effects("start")) == len(held), "every held job to start")

    step_file.write_text(str(STEP))
    stepped_at = time.time() + STEP
    assert sweep(world, env) == {"rescued": [], "dead_workers": []}

    # The worker's heartbeats and maintenance go on for longer than a lease on the stepped
    # clock: a lease judged on the wall clock would have been rescued meanwhile.
    def beat_after_a_lease() -> bool:
        [me] = world.app.backend.list_workers()
        return me.last_beat_at > stepped_at + float(world.settings_env["CONVEYOR_LEASE"]) + 1.0

    wait_for(beat_after_a_lease, "the worker to beat a lease after the step", timeout=30)
    assert sweep(world, env) == {"rescued": [], "dead_workers": []}
    wait_for(lambda: world.app.get_job(later).state is JobState.SUCCEEDED, "the scheduled job")

    release.touch()
    wait_for(lambda: world.all_in(held, JobState.SUCCEEDED), "every held job to succeed")
    for job in world.jobs(held):
        assert (job.attempts, job.lost_runs) == (1, 0), world.describe(held)
    assert sorted(e.job_id for e in world.effects("start")) == held
    assert "rescued" not in worker.log() and "declared worker" not in worker.log(), worker.log()
    worker.send(15)
    assert worker.wait_exit() == 0, worker.log()
