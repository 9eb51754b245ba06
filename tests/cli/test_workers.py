"""`conveyor workers` and `conveyor workers stop`: real worker processes listed with their
health, and stopped gracefully through the database."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.worker.machine import machine_identity
from conveyor.worker.worker import wait_until
from conveyor.worker_info import WorkerRegistration
from tests.cli.support import APP_SOURCE, Invoke, assert_user_error, output_json
from tests.cli.test_process import CONVEYOR, TIMEOUT, clean_env

#: Workers beat (and so hear of a stop request) every second: late only after two.
BEAT = "1.0"

StartWorker = Callable[[str], subprocess.Popen[str]]


@pytest.fixture
def start_worker(tmp_path: Path, url: str) -> Iterator[StartWorker]:
    """``start_worker(name)``: a real `conveyor worker` process, registered when this returns."""
    (tmp_path / "tasks.py").write_text(APP_SOURCE)
    started: list[subprocess.Popen[str]] = []

    def start(name: str) -> subprocess.Popen[str]:
        with (tmp_path / f"{name}.log").open("w") as log:
            proc = subprocess.Popen(
                [CONVEYOR, "--url", url, "worker", "--app", "tasks:app", "--concurrency", "3"],
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
                env=clean_env(CONVEYOR_HEARTBEAT=BEAT),
            )
        started.append(proc)
        with Conveyor(url) as app:
            registered = wait_until(
                lambda: proc.poll() is not None or proc.pid in {w.pid for w in app.workers()},
                TIMEOUT,
            )
        assert registered and proc.poll() is None, (tmp_path / f"{name}.log").read_text()
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def listed(invoke: Invoke) -> dict[int, dict[str, object]]:
    return {int(str(w["pid"])): w for w in output_json(invoke("workers", "--json"))}


@pytest.mark.slow
def test_list_and_stop_real_workers(invoke: Invoke, start_worker: StartWorker) -> None:
    first = start_worker("first")
    second = start_worker("second")

    table = invoke("workers")
    assert table.exit_code == 0, table.output
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "ID", "HOST", "PID", "QUEUES", "CONC", "STARTED", "(UTC)", "LAST", "BEAT", "HEALTH", "STATE"
    ]  # fmt: skip
    assert len(rows) == 2
    for proc, row in zip((first, second), rows, strict=True):
        assert f" {proc.pid} " in row
        assert row.split()[3:5] == ["all", "3"]
        assert row.split()[-2:] == ["alive", "running"], row
    again = invoke("workers", "list").stdout.splitlines()  # the same (beat ages aside)
    assert [row.split()[:5] for row in again] == [row.split()[:5] for row in [header, *rows]]

    shown = listed(invoke)
    assert set(shown) == {first.pid, second.pid}
    record = shown[first.pid]
    assert record["health"] == "alive" and record["state"] == "running"
    assert record["queues"] is None and record["concurrency"] == 3
    assert record["beat_interval"] == float(BEAT)
    assert record["machine"] == machine_identity(), "both workers run on this machine"
    assert shown[second.pid]["machine"] == record["machine"]
    first_id = str(record["id"])

    stopped = invoke("workers", "stop", first_id)
    assert stopped.exit_code == 0, stopped.output
    assert stopped.stdout == f"asked worker {first_id} to stop\n"
    assert first.wait(timeout=TIMEOUT) == 0
    assert second.poll() is None, "only the named worker stops"
    assert set(listed(invoke)) == {second.pid}, "a clean exit leaves the registry"

    refused = invoke("workers", "stop", "--all")  # no terminal to confirm on
    assert_user_error(refused, "pass --yes")
    assert second.poll() is None
    every = output_json(invoke("workers", "stop", "--all", "--yes", "--json"))
    assert every == {"stop_requested": [listed(invoke)[second.pid]["id"]]}
    assert second.wait(timeout=TIMEOUT) == 0
    assert invoke("workers").stdout == "no workers\n"


def test_health_of_late_and_dead_workers(invoke: Invoke, url: str) -> None:
    def register(worker_id: str, silent_for: float) -> None:
        with Conveyor(url, clock=lambda: time.time() - silent_for) as app:
            app.backend.register_worker(
                WorkerRegistration(
                    id=worker_id,
                    host="elsewhere",
                    pid=1,
                    queues=("emails", "default"),
                    concurrency=5,
                    beat_interval=10.0,
                    dead_after=60.0,
                )
            )

    register("fresh", 0.0)
    register("late", 30.0)
    register("dead", 120.0)
    with Conveyor(url) as app:
        app.stop_workers(["fresh"])
    health = {w["id"]: (w["health"], w["state"]) for w in output_json(invoke("workers", "--json"))}
    assert health == {
        "fresh": ("alive", "running"),
        "late": ("late", "running"),
        "dead": ("dead", "running"),
    }
    rows = {row.split()[0]: row for row in invoke("workers").stdout.splitlines()[1:]}
    assert " emails,default " in rows["late"]
    assert rows["fresh"].split()[-3:] == ["alive", "stop", "requested"]
    assert re.search(r" 2m0\ds ago ", rows["dead"]), rows["dead"]


def test_stop_mistakes_are_one_line_errors(invoke: Invoke, migrated: None) -> None:
    assert invoke("workers").stdout == "no workers\n"
    assert output_json(invoke("workers", "--json")) == []
    assert_user_error(invoke("workers", "stop", "no-such-worker"), "no worker with id")
    assert_user_error(invoke("workers", "stop"), "give the ids of the workers")
    assert_user_error(invoke("workers", "stop", "a", "--all"), "not both")
    assert output_json(invoke("workers", "stop", "--all", "--json")) == {"stop_requested": []}


def test_workers_needs_an_existing_database(invoke: Invoke, tmp_path: Path) -> None:
    assert_user_error(invoke("workers"), "no database at")
    assert not (tmp_path / "jobs.db").exists()
