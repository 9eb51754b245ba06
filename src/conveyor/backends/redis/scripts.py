"""The Lua scripts of the Redis engine, one per state transition (lua/*.lua).

common.lua is put in front of every script, and deps.lua and breakers.lua in front of those
whose first line names them (``-- uses: deps, breakers``): each runs as one EVALSHA, and the
shared code it does not use costs nothing per call. redis-py's Script loads a script again when
the server answers NOSCRIPT (a restart, a failover, SCRIPT FLUSH).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

_USES = "-- uses:"


def _source(name: str) -> str:
    return (resources.files("conveyor.backends.redis") / "lua" / f"{name}.lua").read_text(
        encoding="utf-8"
    )


def script_text(name: str) -> str:
    """Script ``name`` with the shared code in front of it."""
    body = _source(name)
    first = body.split("\n", 1)[0]
    uses = [u.strip() for u in first[len(_USES) :].split(",")] if first.startswith(_USES) else []
    return "\n".join([_source("common"), *map(_source, uses), body])


class Scripts:
    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._scripts: dict[str, Any] = {}

    def run(self, name: str, now: float | None, *args: Any) -> Any:
        """Run script ``name`` with "now" (None: the server's clock) and ``args``."""
        script = self._scripts.get(name)
        if script is None:
            script = self._client.register_script(script_text(name))
            self._scripts[name] = script
        return script(keys=[self._prefix], args=["" if now is None else repr(now), *args])
