"""The dashboard's session: a signed cookie saying what its holder may do, with the CSRF
token that every state-changing form must carry back.

The cookie is ``base64(json).hmac`` under a secret made when the server starts: nothing is
stored on the server, a cookie cannot be forged or widened (read to write) without the
secret, and a restart logs everyone out. It is HttpOnly (no script reads it) and
SameSite=Strict (no other site's page sends it). The CSRF token is bound to the session: a
form posted with another session's token, or none, is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from ..auth import Access

COOKIE = "conveyor_session"
#: Seconds a login lasts.
MAX_AGE = 12 * 3600


@dataclass(frozen=True)
class Session:
    #: None: not logged in yet (a session that carries only the login form's CSRF token).
    access: Access | None
    csrf: str
    expires_at: float

    @property
    def can_write(self) -> bool:
        return self.access is Access.WRITE

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())


class Sessions:
    """Signs and reads session cookies with a secret of this process."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def new(self, access: Access | None, now: float) -> Session:
        return Session(access, secrets.token_urlsafe(32), now + MAX_AGE)

    def dump(self, session: Session) -> str:
        payload = json.dumps(
            {
                "access": session.access and session.access.value,
                "csrf": session.csrf,
                "exp": session.expires_at,
            },
            separators=(",", ":"),
        ).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(body)}"

    def load(self, cookie: str | None, now: float) -> Session | None:
        """The session in ``cookie``, or None when it is missing, forged, or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            access = None if data["access"] is None else Access(data["access"])
            session = Session(access, str(data["csrf"]), float(data["exp"]))
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        return session if session.expires_at > now else None

    def _sign(self, body: str) -> str:
        digest = hmac.new(self._secret, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
