"""The real `conveyor` executable in child processes: exit codes, stderr and signals end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.job import JobState
from conveyor.task import encode_job
from conveyor.worker.worker import wait_until
from tests.cli.support import APP_SOURCE

pytestmark = pytest.mark.slow

CONVEYOR = str(Path(sys.executable).with_name("conveyor"))
TIMEOUT = 60
SUCCEEDED = JobState.SUCCEEDED


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    return {**env, **extra}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, env=clean_env()
    )


def test_bad_json_via_python_m(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    done = run(sys.executable, "-m", "conveyor.cli", "--url", url, "enqueue", "t", "--args", "[1,")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("conveyor: error: Invalid value for '--args': not valid JSON")
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "jobs.db").exists()


def test_not_a_database_via_the_console_script(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(4096))
    done = run(CONVEYOR, "--url", f"sqlite:///{path}", "jobs", "show", "1")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("conveyor: error: ")
    assert "not a usable SQLite database" in done.stderr
    assert done.stderr.count("\n") == 1


def test_worker_process_runs_jobs_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(APP_SOURCE)
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    enqueued = run(
        CONVEYOR,
        "--url",
        url,
        "enqueue",
        "tasks.add",
        "--args",
        "[20, 22]",
        "--app",
        "tasks:app",
        cwd=tmp_path,
    )
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = int(enqueued.stdout)

    log = tmp_path / "worker.log"
    with log.open("w") as stderr:
        worker = subprocess.Popen(
            [CONVEYOR, "--url", url, "worker", "--app", "tasks:app", "--concurrency", "2"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=clean_env(),
        )
    try:
        with Conveyor(url) as app:

            def finished_or_worker_gone() -> bool:
                return worker.poll() is not None or app.get_job(job_id).state is SUCCEEDED

            assert wait_until(finished_or_worker_gone, TIMEOUT), log.read_text()
            assert worker.poll() is None, log.read_text()
            assert app.get_job(job_id).result == 42
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=TIMEOUT) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    text = log.read_text()
    assert "INFO" in text and "ready" in text and "worker stopped" in text
    assert "Traceback" not in text


def worker_log_lines(tmp_path: Path, *options: str, **env: str) -> list[str]:
    """Enqueue a job that succeeds and one that fails, run a burst worker; its stderr lines."""
    (tmp_path / "tasks.py").write_text(APP_SOURCE)
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with Conveyor(url) as app:
        app.enqueue_raw(
            [
                encode_job("tasks.add", [1, 2], {}, max_payload_bytes=10_000, queue="math"),
                encode_job(
                    "tasks.explode", [], {}, max_payload_bytes=10_000, queue="math", max_attempts=1
                ),
            ]
        )
    done = subprocess.run(
        [CONVEYOR, "--url", url, "worker", "--app", "tasks:app", "--burst", *options],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=tmp_path,
        env=clean_env(**env),
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


@pytest.mark.parametrize("how", ["option", "environment"])
def test_worker_logs_json_lines(tmp_path: Path, how: str) -> None:
    """Issue 9: --log-format json (or CONVEYOR_LOG_FORMAT=json): every line one JSON object."""
    if how == "option":
        lines = worker_log_lines(tmp_path, "--log-format", "json", "--log-level", "debug")
    else:
        lines = worker_log_lines(tmp_path, CONVEYOR_LOG_FORMAT="json", CONVEYOR_LOG_LEVEL="debug")
    records = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    ready = next(r for r in records if " ready: " in r["message"])
    assert ready["level"] == "INFO" and ready["logger"] == "conveyor.worker"
    assert ready["worker_id"] in ready["message"]
    runs = {r["task"]: r for r in records if r["logger"] == "conveyor.jobs"}
    assert runs["tasks.add"]["outcome"] == "succeeded"
    assert runs["tasks.explode"]["outcome"] == "dead"
    assert runs["tasks.explode"]["error"] == "RuntimeError: boom"
    for run in runs.values():
        assert run["queue"] == "math" and run["attempt"] == 1 and run["duration"] >= 0
        assert isinstance(run["job_id"], int) and run["worker_id"] == ready["worker_id"]


def test_worker_logs_text_by_default(tmp_path: Path) -> None:
    lines = worker_log_lines(tmp_path)
    assert lines and not any(line.startswith("{") for line in lines)
    assert any(" INFO    conveyor.worker: worker " in line for line in lines)
