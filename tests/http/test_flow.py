"""The flow control routes (conveyor/http/flow.py) in process against a real database of each
engine: breakers, queue gates, schedules and why a job waits -- the same library calls as the
CLI, bad input answered 422 naming the field, unknown names 404, the read-only token reading."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from conveyor import Conveyor

TOKEN = "s3cret-full-token-0123456789"
READ = "s3cret-read-token-0123456789"


@pytest.fixture
def flow_app(app: Conveyor) -> Conveyor:
    app.breaker("partner-api", failures=3, window=60, cooldown=30)

    @app.task(name="sync", queue="api", breaker="partner-api")
    def sync(n: int) -> int:
        return n

    @app.periodic(every=60, name="nightly")
    @app.task(name="tidy")
    def tidy() -> None:
        pass

    return app


@pytest.fixture
def client(flow_app: Conveyor) -> Iterator[TestClient]:
    with TestClient(flow_app.asgi(tokens_from_environment=False)) as found:
        yield found


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    document: dict[str, Any] = response.json()
    if field is not None:
        # A union's fields are named by their member too ("until.float").
        assert {e["field"].split(".")[0] for e in document["errors"]} == {field}, document
    return document


def test_breakers_listed_opened_and_closed(client: TestClient, flow_app: Conveyor) -> None:
    [listed] = ok(client.get("/api/breakers"))["breakers"]
    assert (listed["name"], listed["state"], listed["tasks"]) == ("partner-api", "closed", ["sync"])
    opened = ok(client.post("/api/breakers/partner-api/open"))
    assert opened["state"] == "open" and opened["next_probe_at"] is None
    job = flow_app.enqueue("sync", [1])
    why = ok(client.get(f"/api/jobs/{job.id}/why"))
    assert why["id"] == job.id and why["state"] == "queued"
    assert "breaker" in [hold["gate"] for hold in why["held_by"]]
    assert ok(client.post("/api/breakers/partner-api/close"))["state"] == "closed"
    assert [b.state for b in flow_app.breakers()] == ["closed"]


def test_an_unknown_breaker_is_a_404(client: TestClient) -> None:
    found = problem(client.post("/api/breakers/nobody/open"), 404)
    assert found["breaker"] == "nobody"
    problem(client.post("/api/breakers/nobody/close"), 404)


def test_a_queue_paused_and_resumed(client: TestClient, flow_app: Conveyor) -> None:
    paused = ok(client.post("/api/queues/api/pause"))
    assert (paused["paused"], paused["paused_until"]) == (True, None)
    job = flow_app.enqueue("sync", [1])
    held = ok(client.get(f"/api/jobs/{job.id}/why"))["held_by"]
    assert "paused" in [hold["gate"] for hold in held]
    assert ok(client.post("/api/queues/api/resume"))["paused"] is False
    until = flow_app.backend.now() + 3600
    timed = ok(client.post("/api/queues/api/pause", json={"until": until}))
    assert timed["paused_until"] == pytest.approx(until)
    at = ok(client.get("/api/queues/api/gates"))
    assert at["paused"] is True
    [queue] = [q for q in ok(client.get("/api/queues"))["queues"] if q["name"] == "api"]
    assert queue["gates"]["paused_until"] == pytest.approx(until)
    iso = ok(client.post("/api/queues/api/pause", json={"until": "2999-01-01T00:00:00+00:00"}))
    assert iso["paused_until"] == pytest.approx(32472144000.0)


def test_bad_pauses_are_422_naming_until(client: TestClient, flow_app: Conveyor) -> None:
    problem(client.post("/api/queues/api/pause", json={"until": 1.0}), 422, "until")
    problem(client.post("/api/queues/api/pause", json={"until": "2999-01-01T00:00"}), 422, "until")
    problem(client.post("/api/queues/api/pause", json={"until": "soon"}), 422, "until")
    assert flow_app.queue_gates() == []


def test_rate_limits_set_and_removed(client: TestClient, flow_app: Conveyor) -> None:
    put = ok(client.put("/api/queues/api/rate-limit", json={"rate": "100/m"}))
    assert put["rate_limit"] == "100/m"
    assert [g.queue for g in flow_app.queue_gates() if g.rate is not None] == ["api"]
    assert ok(client.delete("/api/queues/api/rate-limit"))["rate_limit"] is None
    for bad in ("100/x", "0/s", "many"):
        found = problem(client.put("/api/queues/api/rate-limit", json={"rate": bad}), 422, "rate")
        assert "rate limit" in found["detail"]
    problem(client.put("/api/queues/api/rate-limit", json={"rate": 5}), 422, "rate")
    assert all(g.rate is None for g in flow_app.queue_gates())


def test_quiet_hours_set_and_removed(client: TestClient, flow_app: Conveyor) -> None:
    body = {"windows": "08:00-18:00", "days": "mon-fri", "timezone": "Europe/Berlin"}
    put = ok(client.put("/api/queues/reports/quiet-hours", json=body))
    assert put["quiet"] is not None and "08:00-18:00" in put["quiet"]
    assert ok(client.delete("/api/queues/reports/quiet-hours"))["quiet"] is None
    for field, bad in (
        ("windows", {"windows": "25:00-26:00"}),
        ("windows", {"windows": "8-18"}),
        ("days", {"windows": "08:00-18:00", "days": "someday"}),
        ("timezone", {"windows": "08:00-18:00", "timezone": "Mars/Olympus"}),
    ):
        problem(client.put("/api/queues/reports/quiet-hours", json=bad), 422, field)
    assert all(g.quiet is None for g in flow_app.queue_gates())


def test_schedules_listed_paused_and_resumed(client: TestClient, flow_app: Conveyor) -> None:
    [listed] = ok(client.get("/api/schedules"))["schedules"]
    assert (listed["name"], listed["task"], listed["paused"]) == ("nightly", "tidy", False)
    paused = ok(client.post("/api/schedules/nightly/pause"))
    assert paused["paused"] is True and paused["next_tick"] is None
    assert [s.paused for s in flow_app.schedules_info()] == [True]
    assert ok(client.post("/api/schedules/nightly/resume"))["paused"] is False
    missing = problem(client.post("/api/schedules/nobody/pause"), 404)
    assert missing["schedule"] == "nobody"


def test_why_of_an_unknown_job_is_a_404(client: TestClient) -> None:
    problem(client.get("/api/jobs/999999/why"), 404)
    problem(client.get("/api/jobs/abc/why"), 422, "job_id")


def test_the_read_token_reads_flow_control_but_cannot_act(flow_app: Conveyor) -> None:
    guarded = TestClient(flow_app.asgi(token=TOKEN, read_token=READ))
    read = {"Authorization": f"Bearer {READ}"}
    job = flow_app.enqueue("sync", [1])
    for path in (
        "/api/breakers",
        "/api/schedules",
        "/api/queues/api/gates",
        f"/api/jobs/{job.id}/why",
    ):
        assert guarded.get(path, headers=read).status_code == 200, path
    for method, path, body in (
        ("POST", "/api/breakers/partner-api/open", None),
        ("POST", "/api/breakers/partner-api/close", None),
        ("POST", "/api/queues/api/pause", None),
        ("POST", "/api/queues/api/resume", None),
        ("PUT", "/api/queues/api/rate-limit", {"rate": "5/s"}),
        ("DELETE", "/api/queues/api/rate-limit", None),
        ("PUT", "/api/queues/api/quiet-hours", {"windows": "08:00-18:00"}),
        ("DELETE", "/api/queues/api/quiet-hours", None),
        ("POST", "/api/schedules/nightly/pause", None),
        ("POST", "/api/schedules/nightly/resume", None),
    ):
        refused = guarded.request(method, path, json=body, headers=read)
        assert refused.status_code == 403, (method, path)
    full = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.post("/api/queues/api/pause", headers=full).status_code == 200
    assert [b.state for b in flow_app.breakers()] == ["closed"]
    assert not any(s.paused for s in flow_app.schedules_info())
