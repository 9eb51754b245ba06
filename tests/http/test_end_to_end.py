"""The issue's "done when", as a new user would do it: in a fresh project folder, ``conveyor
worker`` runs and ``conveyor serve`` beside it; a job is submitted with an HTTP POST (what curl
sends), shows on the dashboard's job page while it runs, is followed by ``conveyor watch`` to
exit status 0, and ``/metrics`` counts it succeeded. Every piece is a real process on a free
port, on each engine's real database (SQLite in the tmp folder, PostgreSQL in a schema of its
own)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.engines import Engine
from tests.http.dashboard_tasks import wait_for
from tests.http.test_server import environment, server

pytestmark = pytest.mark.slow

TASKS = """
import asyncio
from pathlib import Path

from conveyor import Conveyor, JobContext

app = Conveyor()

@app.task(name="resize", pass_context=True)
async def resize(ctx: JobContext, image: str, release: str) -> str:
    \"\"\"Half done, then waits for the file ``release`` (the test's cue to finish).\"\"\"
    ctx.progress(0.5)
    while not Path(release).exists():
        await asyncio.sleep(0.05)
    return image + ".small"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "tasks.py").write_text(TASKS)
    return folder


@pytest.fixture
def worker(database: Engine, project: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor.cli", "worker", "--app", "tasks:app"],
        cwd=project,
        env=environment(database),
        stdout=subprocess.DEVNULL,
        stderr=(project / "worker.log").open("w"),
    )
    yield process
    process.terminate()
    assert process.wait(30) == 0, (project / "worker.log").read_text()


def test_serve_beside_a_worker_submit_watch_and_scrape(
    database: Engine, project: Path, worker: subprocess.Popen[bytes]
) -> None:
    release = project / "release"
    with ExitStack() as stack:
        _, base = stack.enter_context(server(database, project, "--app", "tasks:app"))
        client = stack.enter_context(httpx.Client(base_url=base, timeout=10))
        # curl -X POST $BASE/api/jobs -H 'content-type: application/json' -d '{...}'
        created = client.post(
            "/api/jobs",
            content=f'{{"task": "resize", "args": ["cat.png", "{release}"]}}',
            headers={"content-type": "application/json"},
        )
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]

        # The dashboard shows it running, half done, on the worker.
        def page() -> str:
            shown = client.get(f"/jobs/{job_id}")
            assert shown.status_code == 200
            return shown.text

        wait_for(lambda: "state-running" in page())
        running = page()
        assert f"Job {job_id}" in running and ">resize<" in running
        assert '<progress value="0.5" max="1"></progress> 50.0 %' in running

        watch = subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli", "watch", str(job_id)],
            cwd=project,
            env=environment(database),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        release.touch()
        out, err = watch.communicate(timeout=60)
        assert watch.returncode == 0, (out, err)
        assert "succeeded" in out

        done = page()
        assert "state-succeeded" in done and "cat.png.small" in done
        metrics = client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        lines = metrics.text.splitlines()
        assert 'conveyor_jobs{queue="default",state="succeeded"} 1.0' in lines
        assert 'conveyor_jobs_succeeded_total{queue="default",task="resize"} 1.0' in lines
        assert "conveyor_workers_alive 1.0" in lines
