"""Circuit breakers with real worker processes: a failing downstream opens the breaker and its
jobs wait, burning no attempt, while probes find it still down; once it recovers a probe
closes the breaker and every job succeeds."""

from __future__ import annotations

import pytest

from conveyor import JobState
from conveyor.limits.breakers import CLOSED, OPEN
from tests.worker.harness import Workers, World, wait_for

pytestmark = pytest.mark.slow

JOBS = 30


def breaker_state(world: World) -> tuple[str, float | None]:
    [found] = [b for b in world.app.breakers() if b.name == "sample.downstream"]
    return found.state, found.cooldown


def test_a_failing_downstream_opens_the_breaker_then_recovery_closes_it(
    world: World, workers: Workers
) -> None:
    down = world.tmp / "down"
    down.touch()
    task = world.app.get_task("sample.downstream")
    ids = [job.id for job in world.app.enqueue_many([task.job(str(down)) for _ in range(JOBS)])]
    for name in ("a", "b"):
        workers.start(name, concurrency=2, prefetch=0)

    wait_for(lambda: breaker_state(world)[0] == OPEN, "the breaker to open")
    # Probes find the downstream still down: the cool-down grows to its cap (1 s, then 2 s).
    wait_for(lambda: breaker_state(world) == (OPEN, 2.0), "a failed probe to reopen it")
    failed_runs = len(world.effects("start"))
    waiting = [job for job in world.jobs(ids) if job.state is JobState.QUEUED]
    # Only the runs claimed before it opened and the probes ran; the rest never started.
    assert failed_runs < JOBS // 2, world.describe(ids)
    assert len(waiting) >= JOBS - failed_runs - 4
    assert all(
        job.attempts == 0
        for job in waiting
        if job.id not in {e.job_id for e in world.effects("start")}
    )

    down.unlink()
    wait_for(
        lambda: world.all_in(ids, JobState.SUCCEEDED),
        "every job to succeed",
        on_timeout=lambda: world.describe(ids),
    )
    assert breaker_state(world)[0] == CLOSED
    assert len(world.effects("done")) == JOBS
