"""Bearer tokens: none needed on loopback, required elsewhere; a wrong one is a 401, the
read-only one may read but not act (403)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from conveyor import Conveyor
from conveyor.errors import ConfigurationError
from conveyor.http import Tokens, is_loopback

TOKEN = "s3cret-full-token-0123456789"
READ = "s3cret-read-token-0123456789"


@pytest.fixture
def guarded(app: Conveyor) -> TestClient:
    return TestClient(app.asgi(token=TOKEN, read_token=READ))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_token_or_a_wrong_one_is_a_401(guarded: TestClient, app: Conveyor) -> None:
    for headers in ({}, bearer("wrong"), {"Authorization": f"Basic {TOKEN}"}):
        for response in (
            guarded.get("/api/jobs", headers=headers),
            guarded.post("/api/jobs", json={"task": "add", "args": [1, 2]}, headers=headers),
            guarded.get("/metrics", headers=headers),
        ):
            assert response.status_code == 401, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"] == "Bearer"
    assert app.list_jobs() == []


def test_the_full_token_may_do_everything(guarded: TestClient) -> None:
    job = guarded.post("/api/jobs", json={"task": "add", "args": [1, 2]}, headers=bearer(TOKEN))
    assert job.status_code == 201
    cancel = guarded.post(f"/api/jobs/{job.json()['id']}/cancel", headers=bearer(TOKEN))
    assert cancel.status_code == 200


def test_the_read_token_reads_but_cannot_cancel(guarded: TestClient, app: Conveyor) -> None:
    job = app.enqueue("add", [1, 2])
    assert guarded.get(f"/api/jobs/{job.id}", headers=bearer(READ)).status_code == 200
    assert guarded.get("/metrics", headers=bearer(READ)).status_code == 200
    refused = guarded.post(f"/api/jobs/{job.id}/cancel", headers=bearer(READ))
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:conveyor:problem:forbidden"
    assert guarded.post("/api/jobs", json={"task": "add"}, headers=bearer(READ)).status_code == 403
    assert app.get_job(job.id).state.value == "queued"


def test_probes_need_no_token(guarded: TestClient) -> None:
    assert guarded.get("/healthz").status_code == 200
    assert guarded.get("/readyz").status_code == 200


def test_tokens_come_from_the_environment(app: Conveyor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_API_TOKEN", TOKEN)
    client = TestClient(app.asgi())
    assert client.get("/api/stats").status_code == 401
    assert client.get("/api/stats", headers=bearer(TOKEN)).status_code == 200


def test_token_settings_that_make_no_sense_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="without CONVEYOR_API_TOKEN"):
        Tokens(None, READ)
    with pytest.raises(ConfigurationError, match="must differ"):
        Tokens(TOKEN, TOKEN)
    with pytest.raises(ConfigurationError, match="non-empty"):
        Tokens(" padded ", None)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.4", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_page_of_another_site_cannot_change_anything(client: TestClient, app: Conveyor) -> None:
    job = app.enqueue("add", [1, 2])
    for headers in (
        {"Origin": "https://attacker.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        refused = client.post(f"/api/jobs/{job.id}/cancel", headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["type"] == "urn:conveyor:problem:cross-site"
    assert app.get_job(job.id).state.value == "queued"
    # Reading is harmless (a browser keeps the answer from the other site's page).
    assert client.get("/api/stats", headers={"Origin": "https://attacker.example"}).is_success
    # The server's own origin may.
    same = client.post(f"/api/jobs/{job.id}/cancel", headers={"Origin": "http://testserver"})
    assert same.status_code == 200


def test_only_the_allowed_host_names_are_answered(app: Conveyor) -> None:
    client = TestClient(app.asgi(tokens_from_environment=False, hosts=["localhost", "::1"]))
    for host in ("localhost:8000", "localhost", "[::1]:8000"):
        assert client.get("/api/stats", headers={"Host": host}).status_code == 200, host
    rebound = client.get("/api/stats", headers={"Host": "attacker.example:8000"})
    assert rebound.status_code == 403
    assert rebound.json()["type"] == "urn:conveyor:problem:forbidden-host"
