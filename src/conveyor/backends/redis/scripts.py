"""The Lua scripts of the Redis engine, one per state transition (lua/*.lua).

common.lua, deps.lua and breakers.lua are put in front of every script, which runs as one
EVALSHA; redis-py's Script loads it again when the server answers NOSCRIPT (a restart, a
failover, SCRIPT FLUSH).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.commands.core import Script

_SHARED = ("common", "deps", "breakers")


def _source(name: str) -> str:
    return (resources.files("conveyor.backends.redis") / "lua" / f"{name}.lua").read_text(
        encoding="utf-8"
    )


class Scripts:
    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._shared = "\n".join(_source(name) for name in _SHARED)
        self._scripts: dict[str, Script] = {}

    def run(self, name: str, now: float | None, *args: Any) -> Any:
        """Run script ``name`` with "now" (None: the server's clock) and ``args``."""
        script = self._scripts.get(name)
        if script is None:
            script = self._client.register_script(self._shared + "\n" + _source(name))
            self._scripts[name] = script
        return script(keys=[self._prefix], args=["" if now is None else repr(now), *args])
