"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real
``conveyor serve`` process and a real worker process on a real database: every page loads
with its scripts and styles and breaks no content-security rule, requeueing a dead job and
cancelling a running one work by clicks, markup in a task name stays text, and a server with
a token logs in. A screenshot of the overview lands in test-output/.

scripts/test installs Debian's chromium when it is missing; these tests skip only when it
could not be installed. Playwright never downloads a browser here."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import Browser, Dialog, Page, sync_playwright

from conveyor import Conveyor
from conveyor.job import JobState
from tests.engines import Engine, engine
from tests.http.dashboard_tasks import (
    BREAKER,
    MARKUP_ERROR,
    SCRIPT_TASK,
    populate,
    register,
    wait_for,
)
from tests.http.test_server import environment, server
from tests.support import enabled_backends

pytestmark = pytest.mark.slow

T = TypeVar("T")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]
ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output"
TOKEN = "browser-full-token"
READ_TOKEN = "browser-read-token"

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing and could not be installed (scripts/test runs "
        "'apt-get install -y chromium' when it can)",
        allow_module_level=True,
    )


def off_the_loop(work: Callable[[], T]) -> T:
    """Run ``work`` on a thread of its own: a worker runs an event loop, and Playwright's
    is already running on this thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as driver:
        found = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield found
        found.close()


@dataclass
class Served:
    engine: Engine
    app: Conveyor
    ids: dict[JobState, int]
    base: str
    #: The same database behind CONVEYOR_API_TOKEN / CONVEYOR_API_READ_TOKEN.
    token_base: str
    folder: Path


# PostgreSQL when it is enabled (a fleet's database), else SQLite: one engine keeps the
# module to a few seconds; the in-process tests (test_dashboard.py) cover every engine.
ENGINE = "postgres" if "postgres" in enabled_backends() else enabled_backends()[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("dashboard")
    with ExitStack() as stack:
        database = stack.enter_context(engine(ENGINE, folder))
        # The worker (of queue "slow" alone, for the job to cancel) and the servers start
        # while the database fills.
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor.cli",
                "worker",
                "--app",
                "tests.http.dashboard_tasks:app",
                "--queues",
                "slow",
                "--concurrency",
                "1",
            ],
            cwd=ROOT,
            env=environment(database),
            stdout=subprocess.DEVNULL,
            # Its log, should a test need to know why the worker did not run a job.
            stderr=stack.enter_context((folder / "worker.log").open("w")),
        )
        stack.callback(worker.wait, 30)
        stack.callback(worker.terminate)
        app = stack.enter_context(database.app())
        register(app)
        servers = [
            server(database, ROOT),
            server(database, ROOT, CONVEYOR_API_TOKEN=TOKEN, CONVEYOR_API_READ_TOKEN=READ_TOKEN),
        ]
        with ThreadPoolExecutor(len(servers) + 1) as pool:
            filled = pool.submit(populate, app, running=False)
            starts = [pool.submit(started.__enter__) for started in servers]
            for started, start in zip(servers, starts, strict=True):
                if start.exception() is None:
                    stack.push(started.__exit__)
            (_, base), (_, token_base) = (start.result() for start in starts)
            ids = filled.result()
        yield Served(database, app, ids, base, token_base, folder)


@pytest.fixture
def problems() -> list[str]:
    """What went wrong in the page: console errors and dialogs."""
    return []


@pytest.fixture
def page(browser: Browser, problems: list[str]) -> Iterator[Page]:
    """A page in a fresh context (its own cookies) that fails the test on any console error
    (a script or style the content security policy refused, a script error, a failed load) or
    dialog that the test did not expect (and take out of ``problems``)."""
    context = browser.new_context()
    opened = context.new_page()
    opened.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda error: problems.append(str(error)))

    def dialog(shown: Dialog) -> None:
        problems.append(f"a dialog opened: {shown.message}")
        shown.dismiss()

    opened.on("dialog", dialog)
    yield opened
    context.close()
    assert problems == []


def test_every_page_loads_with_its_scripts_and_styles(served: Served, page: Page) -> None:
    for path, heading in [
        ("/", "Overview"),
        ("/jobs", "Jobs"),
        ("/dead", "Dead letters"),
        ("/queues", "Queues"),
        ("/breakers", "Circuit breakers"),
        ("/schedules", "Schedules"),
        ("/workers", "Workers"),
        (f"/jobs/{served.ids[JobState.DEAD]}", f"Job {served.ids[JobState.DEAD]}"),
    ]:
        response = page.goto(served.base + path)
        assert response is not None and response.status == 200, path
        assert page.locator("h1").first.inner_text().startswith(heading), path
        assert page.evaluate("typeof htmx") == "object", path
        # The stylesheet applied: the header is a flex row.
        assert page.eval_on_selector("header.top", "e => getComputedStyle(e).display") == "flex"
    page.goto(f"{served.base}/jobs?state=dead")
    assert page.locator("table.jobs tbody tr").count() == 1


def test_the_overview_refreshes_pauses_and_is_photographed(served: Served, page: Page) -> None:
    page.goto(served.base + "/")
    with page.expect_response(lambda r: r.url.endswith("/live")) as refreshed:
        pass
    assert refreshed.value.status == 200
    page.evaluate(
        """() => {
            window.sent = 0; window.held = 0;
            document.addEventListener("htmx:beforeRequest", e => {
                if (e.defaultPrevented) { window.held += 1 } else { window.sent += 1 }
            });
        }"""
    )
    page.get_by_role("button", name="Pause live refresh").click()
    assert page.locator("#pause").get_attribute("aria-pressed") == "true"
    # (Polled from here: wait_for_function evaluates a string, which the page's policy forbids.)
    wait_for(lambda: page.evaluate("window.held") >= 1)
    assert page.evaluate("window.sent") == 0
    page.get_by_role("button", name="Resume live refresh").click()
    with page.expect_response(lambda r: r.url.endswith("/live")):
        pass
    assert page.locator("svg rect.succeeded").count() >= 1
    assert page.locator("svg rect.failed").count() >= 1
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "dashboard-overview.png"), full_page=True)
    assert (OUTPUT / "dashboard-overview.png").stat().st_size > 0


def test_markup_in_a_task_name_shows_as_text(served: Served, page: Page) -> None:
    page.goto(f"{served.base}/jobs?queue=held")
    assert page.locator("td.task").first.inner_text() == SCRIPT_TASK
    page.goto(f"{served.base}/jobs/{served.ids[JobState.QUEUED]}")
    assert page.locator("h1 .task").inner_text() == SCRIPT_TASK
    assert page.locator("script").count() == 2  # htmx and the dashboard's own, no more
    page.goto(f"{served.base}/jobs/{served.ids[JobState.DEAD]}")
    assert MARKUP_ERROR in page.locator("details.attempt summary").inner_text()
    assert page.locator("img").count() == 0


def test_requeue_a_dead_job_by_clicking(served: Served, page: Page) -> None:
    dead = served.ids[JobState.DEAD]
    page.goto(f"{served.base}/jobs/{dead}")
    page.get_by_role("button", name="Requeue").click()
    assert page.get_by_role("status").inner_text() == "Requeued."
    assert page.locator("h1 .state").inner_text() == "queued"
    assert served.app.get_job(dead).state is JobState.QUEUED


def test_requeue_selected_dead_letters_after_confirming(served: Served, page: Page) -> None:
    job = served.app.enqueue("explode", kwargs={"reason": "again"})
    off_the_loop(lambda: served.app.run_worker(queues=["default"], concurrency=1, burst=True))
    assert served.app.get_job(job.id).state is JobState.DEAD
    page.goto(f"{served.base}/dead")
    page.get_by_label(f"select job {job.id}").check()
    page.get_by_role("button", name="Requeue selected").click()
    assert page.locator("h1").inner_text() == "Requeue 1 dead job(s)?"
    assert served.app.get_job(job.id).state is JobState.DEAD
    page.get_by_role("button", name="Yes, requeue 1").click()
    assert page.get_by_role("status").inner_text() == "Dead jobs requeued."
    assert served.app.get_job(job.id).state is JobState.QUEUED


def test_cancel_a_running_job_by_clicking(served: Served, page: Page) -> None:
    release = served.folder / "release"
    job = served.app.enqueue("hold", [str(release)])
    wait_for(lambda: served.app.get_job(job.id).state is JobState.RUNNING)
    page.goto(f"{served.base}/jobs/{job.id}")
    assert page.locator("h1 .state").inner_text() == "running"
    page.get_by_role("button", name="Cancel").click()
    assert page.get_by_role("status").inner_text().startswith("Cancelled")
    wait_for(lambda: served.app.get_job(job.id).state is JobState.CANCELLED)
    page.reload()
    assert page.locator("h1 .state").inner_text() == "cancelled"
    assert not release.exists()  # it ended by the cancel, not by being released


def test_pause_a_queue_and_open_a_breaker_by_clicking(served: Served, page: Page) -> None:
    page.goto(f"{served.base}/queues")
    page.get_by_role("button", name="Pause math").click()
    assert page.get_by_role("status").inner_text().startswith("Queue paused")
    gates = page.locator('td.gates[data-queue="math"]')
    assert gates.locator(".state-paused").inner_text() == "paused"
    assert gates.get_by_role("button", name="Resume").count() == 1
    assert [g.queue for g in served.app.queue_gates() if g.to_dict()["paused"]] == ["math"]
    served.app.resume_queue("math")

    # The server runs without --app: it lists the breakers stored, as a worker's first
    # failure behind one (or this close) stores it.
    served.app.close_breaker(BREAKER)
    page.goto(f"{served.base}/breakers")
    page.get_by_role("button", name=f"Open {BREAKER}").click()
    assert page.get_by_role("status").inner_text().startswith("Breaker opened")
    row = page.locator("tr", has=page.locator("td.name", has_text=BREAKER))
    assert row.locator(".state").inner_text() == "open"
    assert [b.state for b in served.app.breakers()] == ["open"]
    served.app.close_breaker(BREAKER)


def test_a_token_server_logs_in_and_the_read_token_only_looks(
    served: Served, page: Page, problems: list[str]
) -> None:
    page.goto(served.token_base + "/")
    assert page.url == served.token_base + "/login"
    page.get_by_label("API token").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "That token is wrong."
    assert problems == [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ]
    problems.clear()
    page.get_by_label("API token").fill(READ_TOKEN)
    page.get_by_role("button", name="Log in").click()
    assert page.locator("h1").inner_text().startswith("Overview")
    assert page.locator(".who").inner_text() == "read-only"
    cookie = next(c for c in page.context.cookies() if c["name"] == "conveyor_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""
    page.goto(f"{served.token_base}/jobs/{served.ids[JobState.CANCELLED]}")
    assert page.get_by_role("button", name="Requeue").count() == 0
    page.get_by_role("button", name="Log out").click()
    assert page.url == served.token_base + "/login"
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{served.token_base}/jobs/{served.ids[JobState.CANCELLED]}")
    assert page.get_by_role("button", name="Requeue").count() == 1
