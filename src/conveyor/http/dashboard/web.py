"""What every dashboard request goes through: the host check, the session (a login form
when a token is configured), the CSRF and cross-site checks on forms, the read-only
token's refusal to act, library errors as pages, and the headers that keep the pages
to themselves (a content security policy that runs only this server's scripts)."""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from conveyor.app import Conveyor
from conveyor.errors import ConveyorError

from ..auth import Access, Tokens
from ..counts import CountsCache
from ..origin import cross_site, host_name
from ..problems import Problem, classify
from .render import environment
from .session import COOKIE, MAX_AGE, Session, Sessions

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Visit:
    request: Request
    session: Session
    #: The path every link starts with (the mount point and the prefix).
    base: str
    #: The session was made for this request: its cookie goes out with the response.
    fresh: bool

    def query(self, name: str) -> str | None:
        """A query parameter, None when absent or blank."""
        value = self.request.query_params.get(name, "").strip()
        return value or None


@dataclass(frozen=True)
class Form:
    fields: dict[str, list[str]]

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0].strip() or None if values else None

    def all(self, name: str) -> list[str]:
        return self.fields.get(name, [])


Handler = Callable[[Visit], Awaitable[Response]]
FormHandler = Callable[[Visit, Form], Awaitable[Response]]


class Refused(Exception):
    """A request the dashboard answers with an error page (status, title, detail)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


class Dashboard:
    def __init__(
        self,
        app: Conveyor,
        *,
        tokens: Tokens,
        counts: CountsCache,
        prefix: str,
        hosts: Sequence[str] | None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.counts = counts
        self.prefix = prefix
        self.hosts = hosts
        self.sessions = Sessions()
        self.templates = environment()

    # --- requests -------------------------------------------------------------------------

    def base(self, request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/") + self.prefix

    def page(
        self, handler: Handler, *, public: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """A page anyone logged in (or, without tokens, anyone) may see; ``public``: the
        login form, which anyone may see."""

        async def endpoint(request: Request) -> Response:
            visit = self._visit(request, public)
            if isinstance(visit, Response):
                return visit
            try:
                return await handler(visit)
            except Refused as refused:
                return self.error(visit, refused.status, refused.title, refused.detail)
            except ConveyorError as exc:
                status, _, title = classify(exc)
                return self.error(visit, status, title, str(exc))
            except Problem as problem:  # a check of the JSON API's, shared (http/flow.py)
                return self.error(visit, problem.status, problem.title, problem.detail)

        return endpoint

    def action(
        self, handler: FormHandler, *, public: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """A form that changes something: same-site, CSRF token of the session, write access
        (``public``: the login form, which needs only the first two)."""

        async def run(visit: Visit) -> Response:
            form = await self.form(visit.request)
            if not visit.session.csrf_matches(form.get("csrf")):
                raise Refused(
                    403, "Forbidden", "the form is stale or not from this dashboard: reload it"
                )
            if not public and not visit.session.can_write:
                raise Refused(403, "Forbidden", "the read-only token cannot change anything")
            return await handler(visit, form)

        page = self.page(run, public=public)

        async def endpoint(request: Request) -> Response:
            if cross_site(request):
                return self._bare_error(
                    403, "a page of another site may not change jobs, queues or workers"
                )
            return await page(request)

        return endpoint

    @staticmethod
    async def form(request: Request) -> Form:
        body = (await request.body()).decode("utf-8", errors="replace")
        return Form(parse_qs(body, keep_blank_values=True))

    def _visit(self, request: Request, public: bool) -> Visit | Response:
        if self.hosts is not None and host_name(request.headers.get("host", "")) not in self.hosts:
            return self._bare_error(403, "this server does not answer to that host")
        now = time.time()
        base = self.base(request)
        session = self.sessions.load(request.cookies.get(COOKIE), now)
        if session is not None and (session.access is not None or public):
            return Visit(request, session, base, fresh=False)
        if not self.tokens.required:
            return Visit(request, self.sessions.new(Access.WRITE, now), base, fresh=True)
        if public:
            return Visit(request, self.sessions.new(None, now), base, fresh=True)
        if request.headers.get("hx-request"):
            # The live overview's poll after the session ran out: the whole page goes to the
            # login form, instead of the form going into the overview's section.
            return Response(status_code=204, headers={**HEADERS, "HX-Redirect": f"{base}/login"})
        return RedirectResponse(f"{base}/login", status_code=303, headers=HEADERS)

    # --- responses ------------------------------------------------------------------------

    def render(self, visit: Visit, template: str, status: int = 200, **context: Any) -> Response:
        html = self.templates.get_template(template).render(
            base=visit.base,
            session=visit.session,
            login=self.tokens.required,
            path=visit.request.url.path,
            **context,
        )
        response = HTMLResponse(html, status, headers=HEADERS)
        if visit.fresh:
            self.set_cookie(response, visit.session, visit)
        return response

    def redirect(self, visit: Visit, path: str) -> Response:
        response = RedirectResponse(f"{visit.base}{path}", status_code=303, headers=HEADERS)
        if visit.fresh:
            self.set_cookie(response, visit.session, visit)
        return response

    def error(self, visit: Visit, status: int, title: str, detail: str) -> Response:
        return self.render(visit, "error.html", status, title=title, detail=detail)

    def set_cookie(self, response: Response, session: Session, visit: Visit) -> None:
        response.set_cookie(
            COOKIE,
            self.sessions.dump(session),
            max_age=MAX_AGE,
            path=visit.base or "/",
            httponly=True,
            samesite="strict",
            secure=visit.request.url.scheme == "https",
        )

    @staticmethod
    def _bare_error(status: int, detail: str) -> Response:
        return HTMLResponse(f"<!doctype html><p>{html.escape(detail)}</p>", status, headers=HEADERS)
