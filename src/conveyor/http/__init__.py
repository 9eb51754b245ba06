"""The HTTP API: an ASGI application (FastAPI) over one Conveyor app, for other services to
submit and inspect jobs, for Prometheus to scrape, and for load balancers to probe.

``conveyor serve`` runs it; ``create_app(app)`` (or ``app.asgi()``) returns it for your own
server or to mount in your FastAPI/Starlette application. Needs the ``server`` extra
(``pip install 'conveyor-jobs[server]'``).

Paths (under ``prefix``): the JSON API under ``/api`` (its OpenAPI schema at
``/api/openapi.json``), ``/metrics``, ``/healthz``, ``/readyz``; the web dashboard at ``/``
(conveyor.http.dashboard). Like the CLI, it reads and acts through the app and the backend
contract; nothing below it imports this package.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from conveyor import __version__
from conveyor.app import Conveyor
from conveyor.errors import ConfigurationError, ConveyorError

from . import dashboard, flow, jobs, observe, workflows
from .auth import Access, Tokens, is_loopback
from .bodylimit import BodyLimit
from .counts import MAX_AGE, CountsCache
from .metrics import CONTENT_TYPE, exposition, registry_for
from .origin import cross_site, host_name
from .problems import Problem, install, problem_response

#: Room for the JSON around a job's arguments (task name, options, escapes).
BODY_MARGIN = 64 * 1024

_bearer = HTTPBearer(auto_error=False, description="CONVEYOR_API_TOKEN or the read-only token")


def create_app(
    app: Conveyor,
    *,
    prefix: str = "",
    token: str | None = None,
    read_token: str | None = None,
    tokens_from_environment: bool = True,
    max_body_bytes: int | None = None,
    hosts: Sequence[str] | None = None,
    stats_max_age: float = MAX_AGE,
) -> Any:
    """The ASGI application serving ``app``'s jobs.

    ``prefix`` (e.g. ``"/jobs"``) puts every path under it; mounting with Starlette's
    ``Mount``/``app.mount("/jobs", ...)`` instead needs no prefix. ``token`` / ``read_token``
    (else CONVEYOR_API_TOKEN / CONVEYOR_API_READ_TOKEN, unless ``tokens_from_environment`` is
    False): with a token set, every request but ``/healthz`` and ``/readyz`` needs it as a
    bearer token, and the read-only token may only read. Without one, anyone who reaches the
    server may do anything: keep it on loopback (``conveyor serve`` refuses otherwise).
    ``max_body_bytes`` (default: the payload limit plus 64 KiB) caps a request body before
    it is parsed. ``hosts``: the only names the API answers to in the Host header (``conveyor
    serve`` without a token allows the loopback names alone, so that a web page cannot reach
    it by DNS rebinding). A browser's cross-site request to change something (a form posted
    by another site) is refused whatever the tokens (403). ``stats_max_age``: seconds the
    figures of ``/api/stats``, ``/api/queues`` and ``/metrics`` are served before they are read
    again (see counts.py), so that many pollers cost the database one read.
    """
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ConfigurationError(f"prefix must start with / and not end with one, got {prefix!r}")
    if tokens_from_environment and token is None and read_token is None:
        tokens = Tokens.from_environment()
    else:
        tokens = Tokens(token, read_token)
    limit = max_body_bytes or app.settings.max_payload_bytes + BODY_MARGIN

    def needs(access: Access) -> Any:
        def check(
            request: Request,
            _: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
        ) -> None:
            if hosts is not None and host_name(request.headers.get("host", "")) not in hosts:
                raise Problem(
                    403, "forbidden-host", "Forbidden", "this server does not answer to that host"
                )
            if access is Access.WRITE and cross_site(request):
                raise Problem(
                    403,
                    "cross-site",
                    "Forbidden",
                    "a request from another site's page may not change jobs, queues or workers",
                )
            tokens.check(request.headers.get("authorization"), access)

        return Depends(check)

    api = FastAPI(
        title="Conveyor",
        version=__version__,
        description="Submit, inspect and steer the jobs of a Conveyor queue.",
        openapi_url=f"{prefix}/api/openapi.json",
        # FastAPI's documentation pages load their scripts from a CDN: none, so that nothing
        # this server serves needs the internet. Any OpenAPI viewer reads the schema.
        docs_url=None,
        redoc_url=None,
    )
    install(api)

    counts = CountsCache(app, max_age=stats_max_age)
    write = [needs(Access.WRITE)]
    routers = (
        jobs.router(app, write),
        observe.router(app, write, counts),
        workflows.router(app, write),
        flow.router(app, write),
    )
    for router in routers:
        api.include_router(router, prefix=f"{prefix}/api", dependencies=[needs(Access.READ)])

    dashboard.mount(api, app, tokens=tokens, counts=counts, prefix=prefix, hosts=hosts)
    registry = registry_for(app, counts)

    @api.get(f"{prefix}/metrics", tags=["probes"], dependencies=[needs(Access.READ)])
    def metrics() -> Response:
        """Prometheus text format."""
        return Response(exposition(registry), media_type=CONTENT_TYPE)

    @api.get(f"{prefix}/healthz", tags=["probes"])
    def healthz() -> dict[str, str]:
        """The process is up (reads nothing)."""
        return {"status": "ok"}

    @api.get(f"{prefix}/readyz", tags=["probes"], responses={503: {"description": "not ready"}})
    async def readyz() -> Any:
        """The database answers and its schema is the one this Conveyor expects."""
        try:
            status = await asyncio.to_thread(lambda: app.backend.verify_schema())
        except ConveyorError as exc:
            return problem_response(503, "not-ready", "Not ready", str(exc))
        if not status.ok:
            problems = "; ".join(status.problems) or (
                f"schema version {status.current}, expected {status.latest}"
            )
            return problem_response(
                503, "not-ready", "Not ready", f"the schema is not current: {problems}"
            )
        return JSONResponse({"status": "ready", "schema": status.current})

    return BodyLimit(api, limit)


#: What ``hosts`` holds for a server on loopback: the names a browser uses to reach it.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

__all__ = ["LOOPBACK_HOSTS", "Tokens", "create_app", "is_loopback"]
