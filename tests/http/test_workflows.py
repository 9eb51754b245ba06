"""Dependencies and workflows over HTTP, on every engine: depends_on (stored ids, and refs to
jobs of the same batch), on_parent_failure, a job's parents and children, a workflow's jobs,
cancelling a workflow; and the errors (unknown parent, cycle, unknown ref) as problem
documents naming the field, with nothing written."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from conveyor import Conveyor
from conveyor.testing import drain
from tests.http.test_auth import READ, TOKEN, bearer


def post(client: TestClient, path: str, body: Any, status: int = 201) -> Any:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()


def problem(client: TestClient, path: str, body: Any, status: int = 422) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    document: dict[str, Any] = response.json()
    return document


def total(app: Conveyor) -> int:
    return sum(sum(counts.values()) for counts in app.stats().values())


def test_a_job_waits_for_a_stored_parent(client: TestClient, app: Conveyor) -> None:
    parent = post(client, "/api/jobs", {"task": "add", "args": [1, 2]})
    child = post(
        client,
        "/api/jobs",
        {"task": "add", "args": [3, 4], "depends_on": [parent["id"]], "on_parent_failure": "run"},
    )
    assert child["state"] == "blocked"
    edges = client.get(f"/api/jobs/{child['id']}/dependencies").json()
    assert edges["state"] == "blocked"
    assert edges["pending_parents"] == 1
    assert edges["parents"] == [{"id": parent["id"], "state": "queued", "result": None}]
    assert edges["children"] == []
    drain(app)
    edges = client.get(f"/api/jobs/{parent['id']}/dependencies").json()
    assert edges["children"] == [{"id": child["id"], "state": "succeeded"}]
    after = client.get(f"/api/jobs/{child['id']}/dependencies").json()
    assert after["parents"] == [{"id": parent["id"], "state": "succeeded", "result": 3}]


def test_a_batch_names_its_own_jobs_by_ref_as_a_workflow(client: TestClient, app: Conveyor) -> None:
    batch = post(
        client,
        "/api/jobs/batch",
        {
            "jobs": [
                # A child may come before its parents: refs name any job of the batch.
                {"task": "add", "args": [0, 0], "depends_on": ["left", "right"], "ref": "sum"},
                {"task": "add", "args": [1, 2], "ref": "left", "workflow_id": "wf-1"},
                {"task": "add", "args": [3, 4], "ref": "right", "workflow_id": "wf-1"},
            ]
        },
    )
    total_id, left, right = (job["id"] for job in batch["jobs"])
    assert batch["refs"] == {"sum": total_id, "left": left, "right": right}
    assert [job["state"] for job in batch["jobs"]] == ["blocked", "queued", "queued"]
    parents = client.get(f"/api/jobs/{total_id}/dependencies").json()["parents"]
    assert sorted(p["id"] for p in parents) == [left, right]

    workflow = client.get("/api/workflows/wf-1").json()
    assert workflow["state"] == "running"
    assert [job["id"] for job in workflow["jobs"]] == [left, right]
    assert workflow["counts"] == {"queued": 2}
    drain(app)
    workflow = client.get("/api/workflows/wf-1").json()
    assert workflow["state"] == "succeeded"
    assert app.get_job(total_id).state.value == "succeeded"


def test_cancelling_a_workflow_cancels_what_is_left(client: TestClient, app: Conveyor) -> None:
    batch = post(
        client,
        "/api/jobs/batch",
        {
            "jobs": [
                {"task": "add", "args": [1, 2], "ref": "a", "workflow_id": "wf-c"},
                {"task": "add", "args": [3, 4], "depends_on": ["a"], "workflow_id": "wf-c"},
            ]
        },
    )
    cancelled = post(client, "/api/workflows/wf-c/cancel", None, status=200)
    assert cancelled["state"] == "failed"
    assert cancelled["counts"] == {"cancelled": 2}
    assert [job["id"] for job in cancelled["jobs"]] == [job["id"] for job in batch["jobs"]]


def test_on_parent_failure_applies(client: TestClient, app: Conveyor) -> None:
    batch = post(
        client,
        "/api/jobs/batch",
        {
            "jobs": [
                {"task": "explode", "ref": "bad"},
                {"task": "add", "args": [1, 1], "depends_on": ["bad"]},
                {"task": "add", "args": [2, 2], "depends_on": ["bad"], "on_parent_failure": "run"},
                {"task": "add", "args": [3, 3], "depends_on": ["bad"], "on_parent_failure": "dead"},
            ]
        },
    )
    drain(app)
    states = [app.get_job(job["id"]).state.value for job in batch["jobs"]]
    assert states == ["dead", "cancelled", "succeeded", "dead"]


def test_an_unknown_parent_is_a_422_naming_the_field(client: TestClient, app: Conveyor) -> None:
    single = problem(client, "/api/jobs", {"task": "add", "args": [1, 2], "depends_on": [999999]})
    assert single["type"] == "urn:conveyor:problem:unknown-parent"
    assert single["errors"][0]["field"] == "depends_on"
    assert single["job_ids"] == [999999]
    parent = post(client, "/api/jobs", {"task": "add", "args": [1, 2]})
    before = total(app)
    placed = problem(
        client,
        "/api/jobs/batch",
        {
            "jobs": [
                {"task": "add", "args": [1, 2], "depends_on": [parent["id"]]},
                {"task": "add", "args": [1, 2], "depends_on": [parent["id"], 888888]},
            ]
        },
    )
    assert placed["type"] == "urn:conveyor:problem:unknown-parent"
    assert placed["errors"][0]["field"] == "jobs[1].depends_on"
    assert total(app) == before  # all or nothing


def test_a_cycle_is_a_422_and_writes_nothing(client: TestClient, app: Conveyor) -> None:
    found = problem(
        client,
        "/api/jobs/batch",
        {
            "jobs": [
                {"task": "add", "args": [1, 2], "ref": "a", "depends_on": ["b"]},
                {"task": "add", "args": [1, 2], "ref": "b", "depends_on": ["a"]},
            ]
        },
    )
    assert found["type"] == "urn:conveyor:problem:dependency-cycle"
    assert found["errors"][0]["field"] in ("jobs[0].depends_on", "jobs[1].depends_on")
    myself = problem(
        client,
        "/api/jobs/batch",
        {"jobs": [{"task": "add", "args": [1, 2], "ref": "me", "depends_on": ["me"]}]},
    )
    assert myself["type"] == "urn:conveyor:problem:dependency-cycle"
    assert total(app) == 0


def test_refs_that_name_nothing_or_twice_are_422s(client: TestClient, app: Conveyor) -> None:
    unknown = problem(
        client,
        "/api/jobs/batch",
        {
            "jobs": [
                {"task": "add", "args": [1, 2]},
                {"task": "add", "args": [1, 2], "depends_on": ["ghost"]},
            ]
        },
    )
    assert unknown["errors"][0]["field"] == "jobs[1].depends_on"
    assert "ghost" in unknown["detail"]
    twice = problem(
        client,
        "/api/jobs/batch",
        {"jobs": [{"task": "add", "ref": "x"}, {"task": "add", "ref": "x"}]},
    )
    assert twice["errors"][0]["field"] == "jobs[1].ref"
    alone = problem(client, "/api/jobs", {"task": "add", "args": [1, 2], "depends_on": ["x"]})
    assert alone["errors"][0]["field"] == "depends_on"
    bad_policy = problem(client, "/api/jobs", {"task": "add", "on_parent_failure": "explode"})
    assert bad_policy["errors"][0]["field"] == "on_parent_failure"
    huge = problem(client, "/api/jobs", {"task": "add", "args": [1, 2], "depends_on": [2**63]})
    assert huge["errors"][0]["field"] == "depends_on"
    assert total(app) == 0


def test_without_the_app_dependencies_work_too(bare_client: TestClient, bare_app: Conveyor) -> None:
    batch = post(
        bare_client,
        "/api/jobs/batch",
        {
            "jobs": [
                {"task": "elsewhere.fetch", "ref": "fetch", "workflow_id": "wf-bare"},
                {"task": "elsewhere.parse", "depends_on": ["fetch"], "workflow_id": "wf-bare"},
            ]
        },
    )
    child = batch["jobs"][1]
    assert child["state"] == "blocked"
    assert bare_app.dependencies(child["id"]).parents[0][0] == batch["jobs"][0]["id"]
    workflow = bare_client.get("/api/workflows/wf-bare").json()
    assert workflow["counts"] == {"queued": 1, "blocked": 1}


def test_unknown_jobs_and_workflows_are_404s(client: TestClient) -> None:
    missing = client.get("/api/jobs/424242/dependencies")
    assert missing.status_code == 404
    assert missing.json()["type"] == "urn:conveyor:problem:job-not-found"
    for response in (
        client.get("/api/workflows/nope"),
        client.post("/api/workflows/nope/cancel"),
    ):
        assert response.status_code == 404
        assert response.json()["type"] == "urn:conveyor:problem:workflow-not-found"
        assert response.json()["workflow_id"] == "nope"


def test_the_read_token_reads_a_workflow_but_cannot_cancel_it(app: Conveyor) -> None:
    guarded = TestClient(app.asgi(token=TOKEN, read_token=READ))
    created = guarded.post(
        "/api/jobs",
        json={"task": "add", "args": [1, 2], "workflow_id": "wf-r"},
        headers=bearer(TOKEN),
    )
    assert created.status_code == 201
    assert guarded.get("/api/workflows/wf-r", headers=bearer(READ)).status_code == 200
    job_id = created.json()["id"]
    assert guarded.get(f"/api/jobs/{job_id}/dependencies", headers=bearer(READ)).status_code == 200
    refused = guarded.post("/api/workflows/wf-r/cancel", headers=bearer(READ))
    assert refused.status_code == 403
    assert app.get_job(job_id).state.value == "queued"
    assert guarded.post("/api/workflows/wf-r/cancel", headers=bearer(TOKEN)).status_code == 200
    assert app.get_job(job_id).state.value == "cancelled"
