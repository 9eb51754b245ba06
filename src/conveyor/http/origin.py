"""Where a request comes from: the host it was sent to, and whether a browser sent it from
another site's page. Shared by the API and the dashboard."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request


def host_name(host: str) -> str:
    """The Host header without its port ("[::1]:8000" -> "::1")."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def cross_site(request: Request) -> bool:
    """Whether a browser sent this request from a page of another origin. Browsers send
    Origin with every POST, PUT and DELETE; HTTP clients such as curl send none."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc != request.headers.get("host", "")
