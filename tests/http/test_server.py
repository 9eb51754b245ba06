"""``conveyor serve`` as a real process (uvicorn on a free port) beside a real worker process,
on each engine: the README's path for a new user. And the ways it refuses to start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.engines import Engine

pytestmark = pytest.mark.slow

APP = """
from conveyor import Conveyor

app = Conveyor()

@app.task(name="add")
def add(x: int, y: int) -> int:
    return x + y
"""


def environment(database: Engine, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(database.env)
    env["CONVEYOR_URL"] = database.url
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def server(
    database: Engine, cwd: Path, *options: str, **env: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor.cli", "serve", "--port", str(port), *options],
        cwd=cwd,
        env=environment(database, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.05)
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
        if process.stdout is not None and not process.stdout.closed:
            process.communicate()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "tasks.py").write_text(APP)
    return folder


def test_submit_wait_and_scrape_beside_a_worker(database: Engine, project: Path) -> None:
    with server(database, project, "--app", "tasks:app") as (process, base):
        created = httpx.post(f"{base}/api/jobs", json={"task": "add", "args": [2, 3]})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        answer: dict[str, Any] = {}

        def wait() -> None:
            answer["job"] = httpx.get(
                f"{base}/api/jobs/{job_id}", params={"wait": 30}, timeout=40
            ).json()

        waiter = threading.Thread(target=wait)
        waiter.start()
        worker = subprocess.run(
            [sys.executable, "-m", "conveyor.cli", "worker", "--app", "tasks:app", "--burst"],
            cwd=project,
            env=environment(database),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert worker.returncode == 0, worker.stderr
        waiter.join(40)
        assert answer["job"]["state"] == "succeeded"
        assert answer["job"]["result"] == 5
        status = httpx.get(f"{base}/api/jobs/{job_id}/status").json()
        assert status["state"] == "succeeded"
        metrics = httpx.get(f"{base}/metrics").text
        assert 'conveyor_jobs{queue="default",state="succeeded"} 1.0' in metrics
        assert httpx.get(f"{base}/readyz").status_code == 200
        bad = httpx.post(f"{base}/api/jobs", json={"task": "add", "args": ["x", 3]})
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then ends by the signal it caught.
        assert process.wait(20) in (0, -signal.SIGTERM)
        assert "Finished server process" in process.communicate()[0]


def test_without_the_app_it_still_manages_jobs(database: Engine, project: Path) -> None:
    with server(database, project) as (_, base):
        created = httpx.post(f"{base}/api/jobs", json={"task": "add", "args": [2, 3]})
        assert created.status_code == 201
        assert created.json()["arguments_checked"] is False
        listed = httpx.get(f"{base}/api/jobs").json()["jobs"]
        assert [job["id"] for job in listed] == [created.json()["id"]]
        # Without a token, only the loopback names: no page can reach it by DNS rebinding.
        rebound = httpx.get(f"{base}/api/jobs", headers={"Host": "attacker.example"})
        assert rebound.status_code == 403
        assert httpx.get(f"{base}/api/jobs", headers={"Host": "localhost"}).status_code == 200


def test_tokens_on_every_address(database: Engine, project: Path) -> None:
    env = {"CONVEYOR_API_TOKEN": "full-0123456789", "CONVEYOR_API_READ_TOKEN": "read-0123456789"}
    with server(database, project, "--host", "0.0.0.0", **env) as (_, base):
        assert httpx.get(f"{base}/api/jobs").status_code == 401
        job = httpx.post(
            f"{base}/api/jobs",
            json={"task": "add", "args": [1, 1]},
            headers={"Authorization": "Bearer full-0123456789"},
        ).json()
        read = {"Authorization": "Bearer read-0123456789"}
        assert httpx.get(f"{base}/api/jobs/{job['id']}", headers=read).status_code == 200
        refused = httpx.post(f"{base}/api/jobs/{job['id']}/cancel", headers=read)
        assert refused.status_code == 403


def run_serve(
    database: Engine, cwd: Path, *options: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor.cli", "serve", "--port", str(free_port()), *options],
        cwd=cwd,
        env=environment(database, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_token_on_every_address_refuses_to_start(database: Engine, project: Path) -> None:
    refused = run_serve(database, project, "--host", "0.0.0.0")
    assert refused.returncode == 2
    assert refused.stderr.startswith("conveyor: error: --host 0.0.0.0 is reachable")
    assert "CONVEYOR_API_TOKEN" in refused.stderr
    assert "Traceback" not in refused.stderr
    with_env = run_serve(database, project, CONVEYOR_SERVE_HOST="0.0.0.0")
    assert with_env.returncode == 2


def test_without_the_server_extra_it_says_which_to_install(database: Engine, project: Path) -> None:
    blocked = project / "blocked"
    blocked.mkdir()
    (blocked / "fastapi.py").write_text("raise ImportError('not installed', name='fastapi')\n")
    refused = run_serve(database, project, PYTHONPATH=str(blocked))
    assert refused.returncode == 2
    lines = refused.stderr.splitlines()
    assert lines == [
        "conveyor: error: conveyor serve needs the server extra (fastapi is missing): "
        "pip install 'conveyor-jobs[server]'"
    ]
