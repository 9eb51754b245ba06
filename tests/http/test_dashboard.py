"""The web dashboard, page by page, in process, on each engine, over a database holding a job
in every state: what each page shows, that every user string is escaped, and that every form
that acts needs the session's CSRF token, a same-site request and write access."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from conveyor import Conveyor
from conveyor.http.auth import Access
from conveyor.http.dashboard.chart import chart
from conveyor.http.dashboard.recent import last_hour
from conveyor.http.dashboard.session import COOKIE, Session, Sessions
from conveyor.job import JobState
from conveyor.testing import Clock, drain
from tests.engines import Engine
from tests.http.dashboard_tasks import KEY, MARKUP_ERROR, SCRIPT_TASK, populate, register

PAGES = ("/", "/live", "/jobs", "/dead", "/queues", "/workers")


@pytest.fixture
def app(database: Engine) -> Iterator[Conveyor]:
    with database.app() as found:
        register(found)
        yield found


@pytest.fixture
def ids(app: Conveyor) -> dict[JobState, int]:
    return populate(app)


@pytest.fixture
def client(app: Conveyor) -> Iterator[TestClient]:
    with TestClient(app.asgi(tokens_from_environment=False)) as found:
        yield found


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def test_every_page_shows_jobs_in_every_state(client: TestClient, ids: dict[JobState, int]) -> None:
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
    listed = client.get("/jobs").text
    for state, job_id in ids.items():
        assert f'href="/jobs/{job_id}"' in listed
        assert f"state-{state.value}" in listed
        detail = client.get(f"/jobs/{job_id}")
        assert detail.status_code == 200 and f"state-{state.value}" in detail.text
    overview = client.get("/").text
    assert 'hx-trigger="every 2s"' in overview and 'id="pause"' in overview
    assert "<svg" in overview and 'class="succeeded"' in overview and 'class="failed"' in overview
    assert "oldest waiting" in overview and f"job {ids[JobState.QUEUED]}" in overview
    assert "test-worker" in client.get("/workers").text
    queues = client.get("/queues").text
    assert all(name in queues for name in ("math", "default", "slow", "held"))


def test_job_detail_shows_attempts_errors_and_timeline(
    client: TestClient, ids: dict[JobState, int]
) -> None:
    dead = client.get(f"/jobs/{ids[JobState.DEAD]}").text
    assert "RuntimeError" in dead and "Traceback (most recent call last)" in dead
    assert "Attempt 1 failed" in dead and "attempt 1 failed: RuntimeError" in dead
    assert ">Requeue</button>" in dead and ">Cancel</button>" not in dead
    succeeded = client.get(f"/jobs/{ids[JobState.SUCCEEDED]}").text
    assert '<pre class="value">3</pre>' in succeeded  # the result
    assert "<li><time>" in succeeded and "succeeded</li>" in succeeded
    running = client.get(f"/jobs/{ids[JobState.RUNNING]}").text
    assert ">Cancel</button>" in running and "test-worker" in running
    assert '<progress value="0.25" max="1"></progress> 25.0 %' in running
    assert "&lt;i&gt;a&lt;/i&gt;" in running  # the checkpoint, escaped
    retrying = client.get(f"/jobs/{ids[JobState.RETRYING]}").text
    assert "ValueError" in retrying and "1 of 3" in retrying
    assert client.get("/jobs/999999").status_code == 404
    assert client.get("/jobs/nope").status_code == 404


def test_user_strings_render_as_text(client: TestClient, ids: dict[JobState, int]) -> None:
    pages = [*PAGES, f"/jobs/{ids[JobState.QUEUED]}", f"/jobs/{ids[JobState.DEAD]}"]
    for path in pages:
        html = client.get(path).text
        assert "<script>alert" not in html, path
        assert "<img src=x" not in html, path
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in client.get("/jobs").text
    dead = client.get(f"/jobs/{ids[JobState.DEAD]}").text
    assert "&lt;img src=x onerror=alert(&#39;owned&#39;)&gt;" in dead
    assert MARKUP_ERROR not in dead
    assert SCRIPT_TASK not in client.get("/").text
    # A query string is escaped too.
    assert "<b>" not in client.get("/jobs", params={"queue": "<b>x</b>"}).text


def test_filters_search_and_pages(
    client: TestClient, app: Conveyor, ids: dict[JobState, int]
) -> None:
    dead_only = client.get("/jobs", params={"state": "dead"}).text
    assert f'href="/jobs/{ids[JobState.DEAD]}"' in dead_only
    assert f'href="/jobs/{ids[JobState.QUEUED]}"' not in dead_only
    math = client.get("/jobs", params={"queue": "math", "task": "add"}).text
    assert f'href="/jobs/{ids[JobState.SUCCEEDED]}"' in math
    assert f'href="/jobs/{ids[JobState.DEAD]}"' not in math
    assert client.get("/jobs", params={"state": "nope"}).status_code == 422
    by_id = client.get("/jobs", params={"q": str(ids[JobState.DEAD])}, follow_redirects=False)
    assert by_id.status_code == 303
    assert by_id.headers["location"] == f"/jobs/{ids[JobState.DEAD]}"
    by_key = client.get("/jobs", params={"q": KEY}).text
    assert f'href="/jobs/{ids[JobState.QUEUED]}"' in by_key
    assert f'href="/jobs/{ids[JobState.DEAD]}"' not in by_key
    more = [app.enqueue("add", [i, i], delay=3600).id for i in range(60)]
    first = client.get("/jobs", params={"queue": "math"}).text
    assert f'href="/jobs/{more[-1]}"' in first and f'href="/jobs/{more[0]}"' not in first
    older = re.search(r'rel="next" href="([^"]+)"', first)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&")).text
    assert f'href="/jobs/{more[0]}"' in second and f'href="/jobs/{more[-1]}"' not in second
    assert "← Newest" in second
    assert client.get("/jobs", params={"cursor": "x"}).status_code == 422


def test_cancel_and_requeue_need_the_sessions_csrf_token(
    client: TestClient, app: Conveyor, ids: dict[JobState, int]
) -> None:
    queued = ids[JobState.QUEUED]
    page = client.get(f"/jobs/{queued}")
    token = csrf_of(page.text)
    assert client.post(f"/jobs/{queued}/cancel").status_code == 403
    assert client.post(f"/jobs/{queued}/cancel", data={"csrf": "forged"}).status_code == 403
    other = TestClient(client.app)  # another browser: another session, another token
    assert other.post(f"/jobs/{queued}/cancel", data={"csrf": token}).status_code == 403
    cross = client.post(
        f"/jobs/{queued}/cancel",
        data={"csrf": token},
        headers={"origin": "http://evil.example"},
    )
    assert cross.status_code == 403
    assert app.get_job(queued).state is JobState.QUEUED

    done = client.post(f"/jobs/{queued}/cancel", data={"csrf": token})
    assert done.status_code == 200 and "Cancelled" in done.text
    assert app.get_job(queued).state is JobState.CANCELLED
    again = client.post(f"/jobs/{queued}/requeue", data={"csrf": token, "reset_attempts": "1"})
    assert again.status_code == 200 and "Requeued." in again.text
    assert app.get_job(queued).state is JobState.QUEUED
    # Asking a queued job to requeue is a conflict, shown as a page.
    conflict = client.post(f"/jobs/{queued}/requeue", data={"csrf": token})
    assert conflict.status_code == 409 and "<h1>" in conflict.text

    running = ids[JobState.RUNNING]
    client.post(f"/jobs/{running}/cancel", data={"csrf": token})
    assert app.get_job(running).cancel_requested


def test_dead_letters_are_requeued_and_discarded_after_confirmation(
    client: TestClient, app: Conveyor, ids: dict[JobState, int]
) -> None:
    more = [app.enqueue("explode", kwargs={"reason": f"r{i}"}).id for i in range(3)]
    app.run_worker(queues=["default"], concurrency=1, burst=True)
    listed = client.get("/dead")
    assert all(f'value="{job_id}"' in listed.text for job_id in [*more, ids[JobState.DEAD]])
    assert "RuntimeError: r1" in listed.text
    token = csrf_of(listed.text)

    confirm = client.post(
        "/dead/confirm", data={"csrf": token, "action": "requeue", "id": [str(more[0])]}
    )
    assert confirm.status_code == 200 and "Requeue 1 dead job(s)?" in confirm.text
    assert app.get_job(more[0]).state is JobState.DEAD  # nothing yet
    applied = client.post(
        "/dead/apply", data={"csrf": token, "action": "requeue", "id": [str(more[0])]}
    )
    assert applied.status_code == 200 and "Dead jobs requeued." in applied.text
    assert app.get_job(more[0]).state is JobState.QUEUED

    everything = client.post(
        "/dead/confirm",
        data={"csrf": token, "action": "discard", "scope": "all", "task": "explode"},
    )
    assert "Discard 3 dead job(s)?" in everything.text
    chosen = re.findall(r'name="id" value="(\d+)"', everything.text)
    assert sorted(map(int, chosen)) == sorted([ids[JobState.DEAD], more[1], more[2]])
    gone = client.post("/dead/apply", data={"csrf": token, "action": "discard", "id": chosen})
    assert "Dead jobs discarded." in gone.text and "3 job(s)" in gone.text
    assert app.list_jobs(state=JobState.DEAD) == []
    nothing = client.post("/dead/confirm", data={"csrf": token, "action": "requeue"})
    assert nothing.status_code == 422
    wrong = client.post("/dead/apply", data={"csrf": token, "action": "burn", "id": ["1"]})
    assert wrong.status_code == 422


def test_queue_caps_and_stopping_workers(
    client: TestClient, app: Conveyor, ids: dict[JobState, int]
) -> None:
    token = csrf_of(client.get("/queues").text)
    capped = client.post("/queues/limit", data={"csrf": token, "queue": "math", "max_running": "2"})
    assert capped.status_code == 200 and "Cap saved." in capped.text
    assert app.concurrency_limits() == {"math": 2}
    bad = client.post("/queues/limit", data={"csrf": token, "queue": "math", "max_running": "0"})
    assert bad.status_code == 422
    client.post("/queues/limit", data={"csrf": token, "queue": "math", "remove": "1"})
    assert app.concurrency_limits() == {}

    stopped = client.post("/workers/stop", data={"csrf": token, "worker": "test-worker"})
    assert stopped.status_code == 200 and "Asked to stop" in stopped.text
    assert [w.stop_requested for w in app.workers()] == [True]
    assert client.post("/workers/stop", data={"csrf": token}).status_code == 422
    missing = client.post("/workers/stop", data={"csrf": token, "worker": "nobody"})
    assert missing.status_code == 404


def test_tokens_need_a_login_and_the_read_token_cannot_act(
    app: Conveyor, ids: dict[JobState, int]
) -> None:
    asgi = app.asgi(token="full-secret", read_token="read-secret")
    with TestClient(asgi) as anonymous:
        for path in PAGES:
            away = anonymous.get(path, follow_redirects=False)
            assert away.status_code == 303 and away.headers["location"] == "/login"
        polled = anonymous.get("/live", headers={"HX-Request": "true"})
        assert polled.status_code == 204 and polled.headers["hx-redirect"] == "/login"
        login = anonymous.get("/login")
        assert login.status_code == 200 and 'type="password"' in login.text
        token = csrf_of(login.text)
        assert anonymous.post("/login", data={"token": "full-secret"}).status_code == 403
        wrong = anonymous.post("/login", data={"csrf": token, "token": "guess"})
        assert wrong.status_code == 401 and "That token is wrong." in wrong.text
        # The API takes no cookie: only its bearer token.
        assert anonymous.get("/api/jobs").status_code == 401

    with TestClient(asgi) as reader:
        token = csrf_of(reader.get("/login").text)
        logged = reader.post("/login", data={"csrf": token, "token": "read-secret"})
        assert logged.status_code == 200 and "read-only" in logged.text
        cookie = logged.history[0].headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        dead = reader.get(f"/jobs/{ids[JobState.DEAD]}")
        assert dead.status_code == 200 and ">Requeue</button>" not in dead.text
        token = csrf_of(dead.text)
        refused = reader.post(f"/jobs/{ids[JobState.DEAD]}/requeue", data={"csrf": token})
        assert refused.status_code == 403
        assert app.get_job(ids[JobState.DEAD]).state is JobState.DEAD
        # Its cookie cannot be widened to full access without the server's secret.
        signed = reader.cookies[COOKIE]
        _, signature = signed.split(".")
        widened = Sessions().dump(Session(Access.WRITE, token, 4e9)).split(".")[0]
        reader.cookies.set(COOKIE, f"{widened}.{signature}")
        assert reader.get("/", follow_redirects=False).status_code == 303

    with TestClient(asgi) as writer:
        token = csrf_of(writer.get("/login").text)
        writer.post("/login", data={"csrf": token, "token": "full-secret"})
        page = writer.get(f"/jobs/{ids[JobState.DEAD]}")
        assert ">Requeue</button>" in page.text
        done = writer.post(f"/jobs/{ids[JobState.DEAD]}/requeue", data={"csrf": csrf_of(page.text)})
        assert done.status_code == 200
        assert app.get_job(ids[JobState.DEAD]).state is JobState.QUEUED
        out = writer.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
        assert out.headers["location"] == "/login"
        writer.cookies.clear()
        assert writer.get("/", follow_redirects=False).status_code == 303


def test_without_a_token_only_the_allowed_host_names_are_answered(app: Conveyor) -> None:
    asgi = app.asgi(tokens_from_environment=False, hosts=["127.0.0.1"])
    with TestClient(asgi, base_url="http://127.0.0.1") as local:
        assert local.get("/").status_code == 200
    with TestClient(asgi, base_url=f"http://{socket.gethostname()}.rebound.example") as other:
        assert other.get("/").status_code == 403


def test_under_a_prefix_every_link_keeps_it(app: Conveyor, ids: dict[JobState, int]) -> None:
    with TestClient(app.asgi(prefix="/ops", tokens_from_environment=False)) as client:
        page = client.get("/ops/")
        assert page.status_code == 200
        assert 'href="/ops/static/dashboard.css"' in page.text
        assert 'hx-get="/ops/live"' in page.text
        assert client.get("/ops/static/htmx.min.js").status_code == 200
        detail = client.get(f"/ops/jobs/{ids[JobState.DEAD]}")
        token = csrf_of(detail.text)
        done = client.post(
            f"/ops/jobs/{ids[JobState.DEAD]}/requeue", data={"csrf": token}, follow_redirects=False
        )
        assert done.headers["location"] == f"/ops/jobs/{ids[JobState.DEAD]}?done=requeued"
        assert client.get("/").status_code == 404


def test_the_package_ships_its_scripts_and_styles() -> None:
    from importlib.resources import files

    static = files("conveyor.http.dashboard") / "static"
    assert "htmx" in (static / "htmx.min.js").read_text()
    assert "Zero-Clause BSD" in (static / "htmx.LICENSE").read_text()
    assert (static / "dashboard.css").read_text()
    assert (static / "dashboard.js").read_text()


def test_the_last_hour_counts_per_minute_from_finished_jobs(tmp_path: Path) -> None:
    clock = Clock(1_800_000_000.0)
    with Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}", clock=clock) as app:
        register(app)
        for i in range(3):
            app.enqueue("add", [i, i])
        app.enqueue("explode")
        drain(app)
        clock.advance(300)
        for i in range(2):
            app.enqueue("add", [i, i])
        drain(app)
        history = last_hour(app, clock())
        an_hour_on = last_hour(app, clock() + 3600)
    assert len(history.minutes) == 60 and not history.partial
    assert (history.minutes[-1].succeeded, history.minutes[-1].failed) == (2, 0)
    assert (history.minutes[-6].succeeded, history.minutes[-6].failed) == (3, 1)
    assert (history.succeeded, history.failed) == (5, 1)
    drawn = chart(history)
    tallest = max(drawn.bars, key=lambda bar: bar.height)
    assert drawn.scale == 3 and tallest.kind == "succeeded" and tallest.label.startswith("5 min")
    assert an_hour_on.succeeded == an_hour_on.failed == 0


def test_mounted_in_another_application(app: Conveyor, ids: dict[JobState, int]) -> None:
    from fastapi import FastAPI

    outer = FastAPI()
    outer.mount("/ops", app.asgi(tokens_from_environment=False))
    with TestClient(outer) as client:
        page = client.get("/ops/")
        assert page.status_code == 200 and 'href="/ops/static/dashboard.css"' in page.text
        assert "Path=/ops" in page.headers["set-cookie"]
        detail = client.get(f"/ops/jobs/{ids[JobState.QUEUED]}")
        done = client.post(
            f"/ops/jobs/{ids[JobState.QUEUED]}/cancel",
            data={"csrf": csrf_of(detail.text)},
            follow_redirects=False,
        )
        assert done.headers["location"] == f"/ops/jobs/{ids[JobState.QUEUED]}?done=cancelled"
        assert app.get_job(ids[JobState.QUEUED]).state is JobState.CANCELLED
