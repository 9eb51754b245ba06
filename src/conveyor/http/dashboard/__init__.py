"""The web dashboard: server-rendered pages (Jinja2) over the same app the JSON API serves,
at ``/`` under the API's prefix. Its few scripts (htmx 2.0.11 from the npm package htmx.org,
vendored with its 0BSD license, and one of its own) and its style ship in this package: the
pages need nothing from the internet.

Pages: the overview (queues, the last hour from the fleet's per-minute aggregates, the oldest
waiting job, workers; refreshed every 2 s unless paused), jobs (filters, search, pages), one
job (why it waits, its parents and children; cancel / requeue), a workflow (its jobs; cancel),
dead letters (requeue or discard, confirmed), queues (caps, pause / resume, rate limits, quiet
hours), circuit breakers (open / close), schedules (pause / resume) and workers (stop).
Without a token anyone who reaches the server may use it (``conveyor serve`` binds to
loopback then); with one, a login form trades the token for a signed session cookie, and the
read-only token sees but cannot act.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from conveyor.app import Conveyor

from ..auth import Tokens
from ..counts import CountsCache
from . import actions, pages
from .web import Dashboard


def mount(
    api: FastAPI,
    app: Conveyor,
    *,
    tokens: Tokens,
    counts: CountsCache,
    prefix: str,
    hosts: Sequence[str] | None,
) -> None:
    """Add the dashboard's routes to ``api``, under ``prefix``."""
    dash = Dashboard(app, tokens=tokens, counts=counts, prefix=prefix, hosts=hosts)

    def get(path: str, handler: pages.PageHandler, *, public: bool = False) -> None:
        endpoint = dash.page(lambda visit: handler(dash, visit), public=public)
        api.add_api_route(prefix + path, endpoint, methods=["GET"], include_in_schema=False)

    def post(path: str, handler: actions.ActionHandler, *, public: bool = False) -> None:
        endpoint = dash.action(lambda visit, form: handler(dash, visit, form), public=public)
        api.add_api_route(prefix + path, endpoint, methods=["POST"], include_in_schema=False)

    get("/", pages.overview)
    get("/live", pages.overview_live)
    get("/jobs", pages.jobs)
    get("/jobs/{job_id}", pages.job)
    post("/jobs/{job_id}/cancel", actions.cancel)
    post("/jobs/{job_id}/requeue", actions.requeue)
    get("/dead", pages.dead)
    post("/dead/confirm", actions.dead_confirm)
    post("/dead/apply", actions.dead_apply)
    get("/queues", pages.queues)
    post("/queues/limit", actions.queue_limit)
    post("/queues/pause", actions.queue_pause)
    post("/queues/resume", actions.queue_resume)
    post("/queues/rate", actions.queue_rate)
    get("/breakers", pages.breakers)
    post("/breakers/open", actions.breaker_open)
    post("/breakers/close", actions.breaker_close)
    get("/schedules", pages.schedules)
    post("/schedules/pause", actions.schedule_pause)
    post("/schedules/resume", actions.schedule_resume)
    # ":path": a workflow id may hold a slash (its links keep it unescaped).
    get("/workflows/{workflow_id:path}", pages.workflow)
    post("/workflows/{workflow_id:path}/cancel", actions.workflow_cancel)
    get("/workers", pages.workers)
    post("/workers/stop", actions.stop_workers)
    get("/login", actions.login_page, public=True)
    post("/login", actions.login, public=True)
    post("/logout", actions.logout, public=True)
    api.mount(
        prefix + "/static",
        StaticFiles(packages=[("conveyor.http.dashboard", "static")]),
        name="dashboard-static",
    )


__all__ = ["mount"]
