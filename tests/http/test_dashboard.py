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

from conveyor import Conveyor, history
from conveyor.http.auth import Access
from conveyor.http.dashboard.chart import chart
from conveyor.http.dashboard.render import when
from conveyor.http.dashboard.session import COOKIE, Session, Sessions
from conveyor.job import JobState
from conveyor.testing import Clock, drain
from tests.engines import Engine
from tests.http.dashboard_tasks import (
    BREAKER,
    KEY,
    MARKUP_ERROR,
    PARTNER_TASK,
    SCHEDULE,
    SCRIPT_TASK,
    populate,
    register,
)

PAGES = ("/", "/live", "/jobs", "/dead", "/queues", "/breakers", "/schedules", "/workers")


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
    oldest = 'oldest waiting, in queue <a href="/jobs?queue=held&amp;state=queued">held</a>'
    assert oldest in overview
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
        queues = reader.get("/queues").text
        assert "Pause</button>" not in queues and "Set rate</button>" not in queues
        assert "Open</button>" not in reader.get("/breakers").text
        refused = reader.post("/queues/pause", data={"csrf": token, "queue": "math"})
        assert refused.status_code == 403 and not app.queue_gates()
        refused = reader.post("/breakers/open", data={"csrf": token, "name": BREAKER})
        assert refused.status_code == 403 and app.breakers()[0].state == "closed"
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


def test_the_last_hour_comes_from_the_aggregates_and_outlives_pruning(tmp_path: Path) -> None:
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
        clock.advance(1)
        while app.backend.prune(0.0):
            pass
        # Every finished job gone but the dead letter: the counts stay.
        assert [job.state for job in app.list_jobs()] == [JobState.DEAD]
        waiting = app.enqueue(SCRIPT_TASK)
        clock.advance(90)
        now = clock()
        minutes = history.throughput(app.backend.minute_stats(now - 3600), now)
        an_hour_on = history.throughput(app.backend.minute_stats(now), now + 3600)
        with TestClient(app.asgi(tokens_from_environment=False)) as client:
            overview = client.get("/").text
    drawn = chart(minutes)
    assert len(minutes) == 60
    assert (minutes[-2]["succeeded"], minutes[-2]["failed"]) == (2, 0)
    assert (minutes[-7]["succeeded"], minutes[-7]["failed"]) == (3, 1)
    assert (drawn.succeeded, drawn.failed) == (5, 1)
    tallest = max(drawn.bars, key=lambda bar: bar.height)
    assert drawn.scale == 3 and tallest.kind == "succeeded" and tallest.label.startswith("6 min")
    assert chart(an_hour_on).succeeded == chart(an_hour_on).failed == 0
    assert 'id="succeeded">5<' in overview and 'id="failed">1<' in overview
    # The oldest ready job of every queue, from Backend.oldest_ready: its queue and its wait.
    assert ">1m 30s<" in overview
    assert f'href="/jobs?queue={waiting.queue}&amp;state=queued">{waiting.queue}<' in overview


def test_queues_page_pauses_resumes_and_rate_limits(
    client: TestClient, app: Conveyor, ids: dict[JobState, int]
) -> None:
    page = client.get("/queues").text
    assert "Pause math" in page and "rate limit: none" in page
    token = csrf_of(page)
    assert client.post("/queues/pause", data={"queue": "math"}).status_code == 403
    paused = client.post("/queues/pause", data={"csrf": token, "queue": "math"})
    assert paused.status_code == 200 and "Queue paused" in paused.text
    (gate,) = [g for g in app.queue_gates() if g.queue == "math"]
    assert gate.to_dict()["paused"] and gate.to_dict()["paused_until"] is None
    assert 'state-paused">paused</span> until resumed' in paused.text
    assert "Resume</button>" in paused.text
    resumed = client.post("/queues/resume", data={"csrf": token, "queue": "math"})
    assert "Queue resumed." in resumed.text
    assert not any(g.to_dict()["paused"] for g in app.queue_gates())

    later = client.post(
        "/queues/pause", data={"csrf": token, "queue": "math", "until": "2999-01-01T10:00"}
    )
    assert later.status_code == 200 and "until 2999-01-01 10:00:00Z" in later.text
    past = client.post(
        "/queues/pause", data={"csrf": token, "queue": "math", "until": "2001-01-01T10:00"}
    )
    assert past.status_code == 422 and "until must be in the future" in past.text
    garbled = client.post("/queues/pause", data={"csrf": token, "queue": "math", "until": "x"})
    assert garbled.status_code == 422

    rated = client.post("/queues/rate", data={"csrf": token, "queue": "math", "rate": "10/m"})
    assert "Rate limit saved." in rated.text and "rate limit: 10/m" in rated.text
    assert [g.to_dict()["rate_limit"] for g in app.queue_gates()] == ["10/m"]
    bad = client.post("/queues/rate", data={"csrf": token, "queue": "math", "rate": "often"})
    assert bad.status_code == 422 and "<h1>Invalid value</h1>" in bad.text
    removed = client.post("/queues/rate", data={"csrf": token, "queue": "math", "remove": "1"})
    assert "Rate limit removed." in removed.text
    assert [g.to_dict()["rate_limit"] for g in app.queue_gates()] == [None]

    # A queue named in markup shows as text, in its row and in its forms.
    app.pause_queue("<b>q</b>")
    shown = client.get("/queues").text
    assert "<b>q</b>" not in shown and 'data-queue="&lt;b&gt;q&lt;/b&gt;"' in shown
    assert 'name="queue" value="&lt;b&gt;q&lt;/b&gt;"' in shown


def test_breakers_page_opens_and_closes(
    client: TestClient, app: Conveyor, ids: dict[JobState, int]
) -> None:
    page = client.get("/breakers").text
    assert "partner-&lt;b&gt;api&lt;/b&gt;" in page and BREAKER not in page
    assert 'state-closed">closed<' in page and PARTNER_TASK in page
    token = csrf_of(page)
    assert client.post("/breakers/open", data={"name": BREAKER}).status_code == 403
    opened = client.post("/breakers/open", data={"csrf": token, "name": BREAKER})
    assert opened.status_code == 200 and "Breaker opened" in opened.text
    assert 'state-open">open<' in opened.text
    assert [b.state for b in app.breakers()] == ["open"]
    listed = client.get("/api/breakers").json()["breakers"]
    assert listed[0]["opened_at"] is not None
    assert f"<td>{when(listed[0]['opened_at'])}</td>" in opened.text
    closed = client.post("/breakers/close", data={"csrf": token, "name": BREAKER})
    assert "Breaker closed." in closed.text
    assert [b.state for b in app.breakers()] == ["closed"]
    missing = client.post("/breakers/open", data={"csrf": token, "name": "nobody"})
    assert missing.status_code == 404


def test_schedules_page_pauses_and_resumes(
    client: TestClient, app: Conveyor, ids: dict[JobState, int]
) -> None:
    page = client.get("/schedules").text
    assert "&lt;em&gt;yearly&lt;/em&gt;" in page and SCHEDULE not in page
    (info,) = app.schedules_info()
    assert info.next_tick is not None and when(info.next_tick) in page
    token = csrf_of(page)
    paused = client.post("/schedules/pause", data={"csrf": token, "name": SCHEDULE})
    assert paused.status_code == 200 and "Schedule paused." in paused.text
    assert [i.paused for i in app.schedules_info()] == [True]
    assert ">paused</td>" in paused.text
    resumed = client.post("/schedules/resume", data={"csrf": token, "name": SCHEDULE})
    assert "Schedule resumed." in resumed.text
    assert [i.paused for i in app.schedules_info()] == [False]
    missing = client.post("/schedules/pause", data={"csrf": token, "name": "nobody"})
    assert missing.status_code == 404


def test_job_page_says_why_it_waits_and_links_its_parents_and_children(
    client: TestClient, app: Conveyor, ids: dict[JobState, int]
) -> None:
    blocked, scheduled = ids[JobState.BLOCKED], ids[JobState.SCHEDULED]
    page = client.get(f"/jobs/{blocked}").text
    why = client.get(f"/api/jobs/{blocked}/why").json()["held_by"]
    assert "Why is it waiting" in page and why
    for hold in why:
        assert f"<strong>{hold['gate']}</strong>: {hold['reason']}" in page
    assert f'Parents</dt><dd><a href="/jobs/{scheduled}">job {scheduled}</a>' in page
    parent = client.get(f"/jobs/{scheduled}").text
    assert f'Children</dt><dd><a href="/jobs/{blocked}">job {blocked}</a>' in parent
    assert "<strong>scheduled</strong>: run at" in parent

    # Gates of flow control: a paused queue, an open breaker (named in markup).
    app.pause_queue("held")
    queued = client.get(f"/jobs/{ids[JobState.QUEUED]}").text
    assert "<strong>paused</strong>" in queued
    partner = app.enqueue(PARTNER_TASK)
    app.open_breaker(BREAKER)
    held = client.get(f"/jobs/{partner.id}").text
    assert "<strong>breaker</strong>" in held and "partner-&lt;b&gt;api&lt;/b&gt;" in held
    assert BREAKER not in held
    # Not waiting: nothing to explain.
    assert "Why is it waiting" not in client.get(f"/jobs/{ids[JobState.SUCCEEDED]}").text
    assert "Why is it waiting" not in client.get(f"/jobs/{ids[JobState.RUNNING]}").text


def test_workflow_page_lists_its_jobs_and_cancels(
    client: TestClient, app: Conveyor, ids: dict[JobState, int]
) -> None:
    name = "order <i>7</i> & co"
    first = app.enqueue("add", [1, 1], delay=3600, workflow_id=name)
    second = app.enqueue("add", [2, 2], depends_on=[first.id], workflow_id=name)
    job_page = client.get(f"/jobs/{first.id}").text
    link = re.search(
        r'<a href="(/workflows/[^"]+)">order &lt;i&gt;7&lt;/i&gt; &amp; co</a>', job_page
    )
    assert link is not None
    page = client.get(link.group(1))
    assert page.status_code == 200 and "<i>7</i>" not in page.text
    assert 'Workflow <span class="name">order &lt;i&gt;7&lt;/i&gt; &amp; co</span>' in page.text
    assert f'href="/jobs/{first.id}"' in page.text and f'href="/jobs/{second.id}"' in page.text
    assert "state-scheduled" in page.text and "state-blocked" in page.text
    cancelled = client.post(f"{link.group(1)}/cancel", data={"csrf": csrf_of(page.text)})
    assert cancelled.status_code == 200 and "Workflow cancelled" in cancelled.text
    assert {app.get_job(i).state for i in (first.id, second.id)} == {JobState.CANCELLED}
    assert "Cancel workflow" not in cancelled.text
    assert client.get("/workflows/nothing-here").status_code == 404


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
