"""Bad requests: every 4xx is a problem document naming the field at fault, none is a 5xx,
and none leaves a job (or half a batch) behind."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from conveyor import Conveyor
from conveyor.job import JobState

PROBLEM = "application/problem+json"


def problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    document: dict[str, Any] = response.json()
    assert document["status"] == status
    assert {"type", "title", "detail"} <= set(document)
    if field is not None:
        assert field in [error["field"] for error in document["errors"]], document
    return document


@pytest.mark.parametrize(
    ("body", "field", "kind"),
    [
        ({"task": "nope"}, "task", "unknown-task"),
        ({"task": "add", "args": [1, "x"]}, "args", "arguments-mismatch"),
        ({"task": "add", "args": [1, 2, 3]}, "args", "arguments-mismatch"),
        ({"task": "add", "args": [1, 2], "priority": "urgent"}, "priority", "invalid-value"),
        ({"task": "add", "args": [1, 2], "priority": 2**40}, "priority", "invalid-value"),
        ({"task": "add", "args": [1, 2], "delay": -1}, "delay", "invalid-value"),
        ({"task": "add", "args": [1, 2], "max_attempts": 0}, "max_attempts", "invalid-value"),
        ({"task": "add", "args": [1, 2], "queue": ""}, "queue", "invalid-value"),
        ({"task": "add", "args": [1, 2], "timeout": 0}, "timeout", "invalid-value"),
        ({"task": "add", "args": [1, 2], "idempotency_key": "a\x00"}, "idempotency_key", None),
        (
            {"task": "add", "args": [1, 2], "run_at": "2030-01-01T00:00:00"},
            "run_at",
            "invalid-value",
        ),
        ({"task": "add", "args": [1, 2], "delay": 1, "run_at": 2e9}, "run_at", None),
        ({"task": "add", "args": [1, 2], "colour": "red"}, "colour", "invalid-request"),
        ({"task": "add", "args": "12"}, "args", "invalid-request"),
        ({"args": [1, 2]}, "task", "invalid-request"),
        ({"task": 7}, "task", "invalid-request"),
    ],
)
def test_a_bad_job_is_a_422_naming_its_field(
    client: TestClient, app: Conveyor, body: dict[str, Any], field: str, kind: str | None
) -> None:
    document = problem(client.post("/api/jobs", json=body), 422, field)
    if kind is not None:
        assert document["type"] == f"urn:conveyor:problem:{kind}"
    assert app.list_jobs() == []


def test_arguments_that_are_not_json_are_refused(
    bare_client: TestClient, bare_app: Conveyor
) -> None:
    body = b'{"task": "t", "args": [NaN]}'
    response = bare_client.post(
        "/api/jobs", content=body, headers={"content-type": "application/json"}
    )
    problem(response, 422, "args")
    assert bare_app.list_jobs() == []


def test_one_bad_job_writes_none_of_the_batch(client: TestClient, app: Conveyor) -> None:
    jobs = [{"task": "add", "args": [1, 2]}, {"task": "add", "args": [1, 2], "delay": -5}]
    problem(client.post("/api/jobs/batch", json={"jobs": jobs}), 422, "jobs[1].delay")
    problem(client.post("/api/jobs/batch", json={"jobs": []}), 422, "jobs")
    assert app.list_jobs() == []


def test_a_payload_over_the_limit_is_a_413(bare_app: Conveyor) -> None:
    app = bare_app
    app.configure(max_payload_bytes=1000)
    with TestClient(app.asgi(tokens_from_environment=False)) as client:
        document = problem(client.post("/api/jobs", json={"task": "t", "args": ["x" * 2000]}), 413)
        assert document["limit"] == 1000
        # The body itself over the cap: refused before anything parses it.
        huge = client.post(
            "/api/jobs",
            content=b'{"task": "t", "args": ["' + b"x" * 200_000 + b'"]}',
            headers={"content-type": "application/json"},
        )
        problem(huge, 413)
        assert app.list_jobs() == []


def test_a_full_queue_is_a_429_with_its_depth(bare_app: Conveyor) -> None:
    app = bare_app
    app.configure(queue_limits={"default": 1})
    with TestClient(app.asgi(tokens_from_environment=False)) as client:
        assert client.post("/api/jobs", json={"task": "t"}).status_code == 201
        document = problem(client.post("/api/jobs", json={"task": "t"}), 429, "queue")
        assert (document["depth"], document["limit"]) == (1, 1)


def test_missing_jobs_are_404_and_wrong_states_409(client: TestClient) -> None:
    problem(client.get("/api/jobs/424242"), 404)
    problem(client.get("/api/jobs/424242/status"), 404)
    problem(client.post("/api/jobs/424242/cancel"), 404)
    problem(client.get(f"/api/jobs/{2**70}"), 404)
    problem(client.get(f"/api/jobs/{2**300}"), 422, "id")
    problem(client.get("/api/jobs/abc"), 422, "job_id")
    job = client.post("/api/jobs", json={"task": "add", "args": [1, 2]}).json()
    document = problem(client.post(f"/api/jobs/{job['id']}/requeue"), 409)
    assert document["state"] == JobState.QUEUED.value
    problem(client.post("/api/dead/requeue", json={"ids": [job["id"]]}), 409)


def test_bad_queries_and_selections(client: TestClient) -> None:
    problem(client.get("/api/jobs", params={"state": "sleeping"}), 422, "state.0")
    problem(client.get("/api/jobs", params={"limit": 0}), 422, "limit")
    problem(client.get("/api/jobs", params={"cursor": -1}), 422, "cursor")
    problem(client.get("/api/jobs/1", params={"wait": 301}), 422, "wait")
    problem(client.get("/api/jobs", params={"queue": ""}), 422, "queue")
    problem(client.post("/api/dead/requeue", json={}), 422, "ids")
    problem(client.post("/api/dead/requeue", json={"ids": [1], "all": True}), 422, "ids")
    problem(client.post("/api/dead/discard", json={"ids": [1], "queue": "q"}), 422, "queue")
    problem(client.put("/api/queues/math/limit", json={"max_running": 0}), 422, "max_running")
    problem(client.post("/api/workers/stop", json={}), 422, "ids")
    problem(
        client.post("/api/jobs", content=b"{", headers={"content-type": "application/json"}), 422
    )
    problem(client.get("/api/nothing-here"), 404)
    problem(client.delete("/api/jobs"), 405)


def test_headers_and_body_disagree_on_the_key(client: TestClient) -> None:
    response = client.post(
        "/api/jobs",
        json={"task": "add", "args": [1, 2], "idempotency_key": "a"},
        headers={"Idempotency-Key": "b"},
    )
    problem(response, 422, "idempotency_key")
