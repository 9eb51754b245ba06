"""Bearer tokens: one that may do everything, and an optional one that may only read.

Without any token every request is allowed: ``conveyor serve`` only runs so on a loopback
address (see ``is_loopback``). Tokens are compared in constant time, so a wrong guess takes
as long as a right one.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import os
from dataclasses import dataclass

from conveyor.errors import ConfigurationError

from .problems import Problem

TOKEN_ENV = "CONVEYOR_API_TOKEN"  # noqa: S105  (a variable name, not a secret)
READ_TOKEN_ENV = "CONVEYOR_API_READ_TOKEN"  # noqa: S105


class Access(enum.Enum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Tokens:
    token: str | None = None
    read_token: str | None = None

    def __post_init__(self) -> None:
        for name, value in (("token", self.token), ("read token", self.read_token)):
            if value is not None and (not value or value != value.strip() or "\n" in value):
                raise ConfigurationError(
                    f"the API {name} must be a non-empty string without surrounding spaces"
                )
        if self.read_token is not None and self.token is None:
            raise ConfigurationError(
                f"{READ_TOKEN_ENV} is set without {TOKEN_ENV}: set the full token too"
            )
        if self.read_token is not None and self.read_token == self.token:
            raise ConfigurationError(f"{READ_TOKEN_ENV} must differ from {TOKEN_ENV}")

    @classmethod
    def from_environment(cls) -> Tokens:
        return cls(os.environ.get(TOKEN_ENV) or None, os.environ.get(READ_TOKEN_ENV) or None)

    @property
    def required(self) -> bool:
        return self.token is not None

    def grant(self, presented: str) -> Access | None:
        """What the holder of ``presented`` may do: WRITE, READ, or nothing (None) for a
        wrong token. Without any token configured, everything."""
        if self.token is None:
            return Access.WRITE
        given = presented.encode()
        # Both comparisons always run: which token matched must not show in the timing.
        full = hmac.compare_digest(given, self.token.encode())
        read = self.read_token is not None and hmac.compare_digest(given, self.read_token.encode())
        if full:
            return Access.WRITE
        return Access.READ if read else None

    def check(self, authorization: str | None, needed: Access) -> None:
        """Raise a 401 (no or wrong token) or 403 (read token, write needed) problem."""
        if self.token is None:
            return
        presented = _bearer(authorization)
        if presented is None:
            raise _unauthorized("send the API token as 'Authorization: Bearer TOKEN'")
        granted = self.grant(presented)
        if granted is Access.WRITE or granted is needed:
            return
        if granted is Access.READ:
            raise Problem(
                403,
                "forbidden",
                "Forbidden",
                "the read-only token cannot change jobs, queues or workers",
            )
        raise _unauthorized("the API token is wrong")


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"}
    )


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach a server bound to ``host``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
