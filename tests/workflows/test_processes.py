"""A chain and a chord across two real worker processes, one of them SIGKILLed while it runs
steps of both: every job ends succeeded, each step's body completes once, and no step starts
before all of its parents completed."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import JobState, chain, chord
from tests.postgres.worker_app import EFFECTS_DIR_ENV, read_effects
from tests.worker.harness import WorkerProcess, spawn_logged, wait_for
from tests.workflows.worker_app import build_app

SHORT: dict[str, Any] = {"lease": 2.0, "heartbeat": 0.5, "sweep_interval": 0.2}


@pytest.fixture
def procs() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    try:
        yield started
    finally:
        for proc in started:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                proc.kill()


def start(tmp: Path, env: dict[str, str], name: str, procs: list[WorkerProcess]) -> WorkerProcess:
    log = tmp / f"worker-{name}.log"
    argv = [sys.executable, "-m", "tests.workflows.worker_app", "--concurrency", "4"]
    proc = WorkerProcess(name, spawn_logged(argv, env, log), log, 0.0)
    procs.append(proc)
    proc.wait_ready(60)
    return proc


def test_chain_and_chord_survive_a_killed_worker(
    tmp_path: Path, url_and_schema: dict[str, Any], procs: list[WorkerProcess]
) -> None:
    effects = tmp_path / "effects"
    effects.mkdir()
    release = tmp_path / "release"
    app = build_app(**url_and_schema, **SHORT)
    env = {
        "CONVEYOR_URL": url_and_schema["url"],
        EFFECTS_DIR_ENV: str(effects),
        **{f"CONVEYOR_{k.upper()}": str(v) for k, v in SHORT.items()},
    }
    if "postgres_schema" in url_and_schema:
        env["CONVEYOR_POSTGRES_SCHEMA"] = url_and_schema["postgres_schema"]
    if "redis_prefix" in url_and_schema:
        env["CONVEYOR_REDIS_PREFIX"] = url_and_schema["redis_prefix"]
    try:
        step = app.get_task("wf.step")
        held = str(release)
        pipeline = chain(step.job(1, held), step.job(10, ""), step.job(100, ""))
        fan_in = chord([step.job(1, held), step.job(2, held), step.job(3, held)], step.job(0, ""))
        first, second = pipeline.enqueue(app), fan_in.enqueue(app)
        held_ids = {first.jobs[0].id, *(j.id for j in second.jobs[:3])}
        parents: dict[int, list[int]] = {
            first.jobs[1].id: [first.jobs[0].id],
            first.jobs[2].id: [first.jobs[1].id],
            second.jobs[3].id: [j.id for j in second.jobs[:3]],
        }
        every = [j.id for j in first.jobs + second.jobs]

        a = start(tmp_path, env, "A", procs)
        b = start(tmp_path, env, "B", procs)
        wait_for(
            lambda: {e.job_id for e in read_effects(effects, "start")} >= held_ids,
            "the four held steps to start",
        )
        pids = {e.worker_pid for e in read_effects(effects, "start")}
        victim = a if a.pid in pids else b
        victim.kill()
        release.touch()

        def ended() -> bool:
            return all(app.get_job(i).state is JobState.SUCCEEDED for i in every)

        wait_for(ended, "every step to succeed", 60, on_timeout=lambda: a.log() + b.log())
        assert any(app.get_job(i).lost_runs for i in held_ids), "the kill cut a step short"
        assert app.result(first.last[0]) == 111
        assert app.result(second.last[0]) == 6
        done: dict[int, list[float]] = defaultdict(list)
        for effect in read_effects(effects, "done"):
            done[effect.job_id].append(effect.at)
        assert {i: len(done[i]) for i in every} == dict.fromkeys(every, 1)
        for effect in read_effects(effects, "start"):
            for parent in parents.get(effect.job_id, []):
                assert effect.at >= done[parent][0], f"{effect.job_id} started before {parent}"
        assert app.workflow(first.id).state == "succeeded"
    finally:
        app.close()
