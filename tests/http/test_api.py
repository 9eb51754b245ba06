"""The JSON API's main paths, in process against a real database of each engine."""

from __future__ import annotations

import threading
import time
from typing import Any

from starlette.testclient import TestClient

from conveyor import Conveyor
from conveyor.job import JobState


def submit(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def test_submit_applies_the_task_defaults_and_reads_back(client: TestClient) -> None:
    job = submit(client, task="add", args=[1], kwargs={"y": 2}, priority="high")
    assert job["state"] == "queued"
    assert job["queue"] == "math"  # the task's default
    assert job["max_attempts"] == 1
    assert job["priority"] == 50
    assert job["arguments_checked"] is True
    assert "warning" not in job
    read = client.get(f"/api/jobs/{job['id']}").json()
    assert {k: read[k] for k in ("id", "task", "args", "kwargs", "state")} == {
        "id": job["id"],
        "task": "add",
        "args": [1],
        "kwargs": {"y": 2},
        "state": "queued",
    }
    status = client.get(f"/api/jobs/{job['id']}/status").json()
    assert status["state"] == "queued" and status["task"] == "add"


def test_run_at_and_delay_schedule_the_job(client: TestClient) -> None:
    later = submit(client, task="add", args=[1, 2], run_at="2999-01-01T00:00:00+00:00")
    assert later["state"] == "scheduled"
    assert later["run_at"] == 32472144000.0
    delayed = submit(client, task="add", args=[1, 2], delay=3600)
    assert delayed["state"] == "scheduled"


def test_the_idempotency_key_returns_the_live_job_with_200(client: TestClient) -> None:
    first = client.post(
        "/api/jobs", json={"task": "add", "args": [1, 2]}, headers={"Idempotency-Key": "order-7"}
    )
    again = client.post(
        "/api/jobs", json={"task": "add", "args": [1, 2], "idempotency_key": "order-7"}
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert again.json()["idempotency_key"] == "order-7"


def test_without_the_app_jobs_are_enqueued_as_given_and_say_so(
    bare_client: TestClient, bare_app: Conveyor
) -> None:
    job = submit(bare_client, task="elsewhere.resize", args=["a.png"], queue="images")
    assert job["arguments_checked"] is False
    assert "could not check the arguments" in job["warning"]
    assert bare_app.get_job(job["id"]).task == "elsewhere.resize"


def test_a_batch_is_written_whole(client: TestClient, app: Conveyor) -> None:
    response = client.post(
        "/api/jobs/batch",
        json={"jobs": [{"task": "add", "args": [1, 2]}, {"task": "add", "args": [3, 4]}]},
    )
    assert response.status_code == 201
    assert response.json()["created"] == [True, True]
    assert len(app.list_jobs()) == 2


def test_list_pages_with_a_cursor_and_filters(client: TestClient) -> None:
    ids = [submit(client, task="add", args=[i, i])["id"] for i in range(5)]
    submit(client, task="explode")
    first = client.get("/api/jobs", params={"task": "add", "limit": 3}).json()
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:3]
    second = client.get(
        "/api/jobs", params={"task": "add", "limit": 3, "cursor": first["next_cursor"]}
    ).json()
    assert [j["id"] for j in second["jobs"]] == ids[::-1][3:]
    assert second["next_cursor"] is None
    by_state = client.get("/api/jobs", params=[("state", "queued"), ("state", "dead")]).json()
    assert len(by_state["jobs"]) == 6
    assert client.get("/api/jobs", params={"queue": "default"}).json()["jobs"][0]["task"] == (
        "explode"
    )
    keyed = submit(client, task="add", args=[1, 1], idempotency_key="order-9")
    by_key = client.get("/api/jobs", params={"idempotency_key": "order-9"}).json()
    assert [j["id"] for j in by_key["jobs"]] == [keyed["id"]]


def test_dead_job_shows_its_error_then_requeue_and_bulk(client: TestClient, app: Conveyor) -> None:
    ids = [submit(client, task="explode", kwargs={"reason": f"r{i}"})["id"] for i in range(3)]
    app.run_worker(burst=True, concurrency=1)
    dead = client.get(f"/api/jobs/{ids[0]}").json()
    assert dead["state"] == "dead"
    assert dead["errors"][0]["type"] == "RuntimeError"
    assert "r0" in dead["errors"][0]["message"]
    assert "Traceback" in dead["errors"][0]["traceback"]
    assert client.get("/api/stats").json()["dead_letters"] == 3

    one = client.post(f"/api/jobs/{ids[0]}/requeue", json={"reset_attempts": True})
    assert one.status_code == 200 and one.json()["state"] == "queued"
    bulk = client.post("/api/dead/requeue", json={"ids": [ids[1]]}).json()
    assert bulk["requeued"] == 1
    discarded = client.post("/api/dead/discard", json={"all": True, "task": "explode"}).json()
    assert discarded == {"discarded": 1, "ids": [ids[2]]}
    assert client.get(f"/api/jobs/{ids[2]}").status_code == 404


def test_cancel(client: TestClient) -> None:
    job = submit(client, task="add", args=[1, 2])
    cancelled = client.post(f"/api/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = client.post(f"/api/jobs/{job['id']}/requeue")
    assert again.json()["state"] == "queued"


def test_wait_returns_once_the_job_ends(client: TestClient, app: Conveyor) -> None:
    job = submit(client, task="add", args=[2, 3])
    answer: dict[str, Any] = {}

    def wait() -> None:
        started = time.monotonic()
        answer["job"] = client.get(f"/api/jobs/{job['id']}", params={"wait": 30}).json()
        answer["took"] = time.monotonic() - started

    waiter = threading.Thread(target=wait)
    waiter.start()
    app.run_worker(burst=True, concurrency=1)
    waiter.join(30)
    assert answer["job"]["state"] == "succeeded"
    assert answer["job"]["result"] == 5
    assert answer["took"] < 20


def test_wait_runs_out_with_the_job_as_it_is(client: TestClient) -> None:
    job = submit(client, task="add", args=[2, 3])
    waited = client.get(f"/api/jobs/{job['id']}", params={"wait": 0.2})
    assert waited.status_code == 200 and waited.json()["state"] == "queued"


def test_queues_caps_and_stats(client: TestClient, app: Conveyor) -> None:
    submit(client, task="add", args=[1, 2])
    assert client.put("/api/queues/math/limit", json={"max_running": 2}).status_code == 200
    queues = client.get("/api/queues").json()["queues"]
    assert queues == [
        {
            "name": "math",
            "jobs": {s.value: (1 if s is JobState.QUEUED else 0) for s in JobState},
            "estimated": [],
            "max_running": 2,
            "max_waiting": None,
            "oldest_ready_age": queues[0]["oldest_ready_age"],
            "throughput": {
                "enqueued_last_hour": 0,
                "ended_last_hour": 0,
                "succeeded_last_hour": 0,
                "failed_last_hour": 0,
                "per_minute": 0.0,
            },
            "gates": {
                "queue": "math",
                "max_running": 2,
                "paused_until": None,
                "paused": False,
                "quiet": None,
                "rate_limit": None,
                "rate_next": None,
            },
        }
    ]
    assert queues[0]["oldest_ready_age"] >= 0
    assert app.concurrency_limits() == {"math": 2}
    assert client.delete("/api/queues/math/limit").json() == {"queue": "math", "max_running": None}
    assert app.concurrency_limits() == {}
    stats = client.get("/api/stats").json()
    assert stats["jobs"]["queued"] == 1
    assert stats["queues"]["math"]["queued"] == 1


def test_workers_listed_and_stopped(client: TestClient, app: Conveyor) -> None:
    worker = app.worker(concurrency=1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not client.get("/api/workers").json()["workers"]:
            assert time.monotonic() < deadline, "the worker never registered"
            time.sleep(0.05)
        listed = client.get("/api/workers").json()["workers"]
        assert listed[0]["health"] == "alive"
        stopped = client.post("/api/workers/stop", json={"all": True}).json()
        assert stopped["stopping"] == [listed[0]["id"]]
        thread.join(20)
        assert not thread.is_alive()
    finally:
        worker.stop()
        thread.join(20)
    missing = client.post("/api/workers/stop", json={"ids": ["nobody"]})
    assert missing.status_code == 404


def test_metrics_in_prometheus_text(client: TestClient) -> None:
    submit(client, task="add", args=[1, 2])
    client.put("/api/queues/math/limit", json={"max_running": 3})
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'conveyor_jobs{queue="math",state="queued"} 1.0' in text
    assert 'conveyor_queue_max_running{queue="math"} 3.0' in text
    assert 'conveyor_workers{health="alive"} 0.0' in text


def test_probes(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_the_openapi_schema_documents_every_route(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    for path in (
        "/api/jobs",
        "/api/jobs/batch",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/status",
        "/api/jobs/{job_id}/cancel",
        "/api/jobs/{job_id}/requeue",
        "/api/dead/requeue",
        "/api/dead/discard",
        "/api/queues",
        "/api/queues/{name}/limit",
        "/api/workers",
        "/api/workers/stop",
        "/api/stats",
        "/api/breakers",
        "/api/breakers/{name}/open",
        "/api/breakers/{name}/close",
        "/api/queues/{name}/gates",
        "/api/queues/{name}/pause",
        "/api/queues/{name}/resume",
        "/api/queues/{name}/rate-limit",
        "/api/queues/{name}/quiet-hours",
        "/api/schedules",
        "/api/schedules/{name}/pause",
        "/api/schedules/{name}/resume",
        "/api/jobs/{job_id}/why",
        "/metrics",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path


def test_mounted_under_a_prefix(app: Conveyor) -> None:
    from fastapi import FastAPI

    outer = FastAPI()
    outer.mount("/jobs", app.asgi(tokens_from_environment=False))
    with TestClient(outer) as client:
        job = submit_at(client, "/jobs/api/jobs", task="add", args=[1, 2])
        assert client.get(f"/jobs/api/jobs/{job['id']}").json()["state"] == "queued"
    with TestClient(app.asgi(prefix="/q", tokens_from_environment=False)) as client:
        assert client.get("/q/healthz").json() == {"status": "ok"}
        assert client.get("/healthz").status_code == 404


def submit_at(client: TestClient, path: str, **body: Any) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def test_an_eager_app_runs_the_job_before_answering(app: Conveyor) -> None:
    app.configure(eager=True)  # conveyor.testing's mode: a test of a service that calls the API
    with TestClient(app.asgi(tokens_from_environment=False)) as client:
        job = submit(client, task="add", args=[4, 5])
    assert (job["state"], job["result"]) == ("succeeded", 9)


def test_counts_are_read_once_per_interval_and_shared(app: Conveyor) -> None:
    from conveyor.http.counts import CountsCache

    now = [100.0]
    counts = CountsCache(app, max_age=1.0, clock=lambda: now[0])
    assert counts.get().jobs == {}
    app.enqueue("add", [1, 2])
    assert counts.get().jobs == {}  # still the count of a moment ago
    now[0] += 1.0
    assert counts.get().jobs == {"math": {JobState.QUEUED: 1}}
