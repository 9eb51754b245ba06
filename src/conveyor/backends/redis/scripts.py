"""The Lua scripts of the Redis engine, one per state transition (lua/*.lua).

common.lua is put in front of every script, and deps.lua and breakers.lua in front of those
whose first line names them (``-- uses: deps, breakers``): each runs as one EVALSHA, and the
shared code it does not use costs nothing per call. A script is loaded again when the server
answers NOSCRIPT (a restart, a failover, SCRIPT FLUSH).

On a single server each thread sends its scripts on a connection of the pool it keeps (given
back when the thread ends): redis-py's own path takes a connection from the pool, polls it for
stale data and gives it back around every command, which costs more client time than the rest
of a call. Retries on a broken connection are the client's own (its Retry, as configured in
connection.py). A Redis Cluster client routes each call itself.
"""

from __future__ import annotations

import os
import threading
import weakref
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoScriptError

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


class _Held:
    """A connection of ``pool`` that one thread keeps, given back when the thread ends (its
    thread-local storage, and so this object, goes away) or after a fork (another pid)."""

    def __init__(self, pool: Any) -> None:
        self.pid = os.getpid()
        self.connection = pool.get_connection()
        weakref.finalize(self, pool.release, self.connection)


class Scripts:
    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._scripts: dict[str, Any] = {}
        self._pool = client.connection_pool if isinstance(client, redis.Redis) else None
        self._local = threading.local()

    def run(self, name: str, now: float | None, *args: Any) -> Any:
        """Run script ``name`` with "now" (None: the server's clock) and ``args``."""
        script = self._scripts.get(name)
        if script is None:
            script = self._client.register_script(script_text(name))
            self._scripts[name] = script
        argv = ("" if now is None else repr(now), *args)
        if self._pool is None:
            return script(keys=[self._prefix], args=argv)
        try:
            return self._evalsha(script.sha, argv)
        except NoScriptError:
            script.sha = self._client.script_load(script.script)
            return self._evalsha(script.sha, argv)

    def _evalsha(self, sha: str, argv: tuple[Any, ...]) -> Any:
        held: _Held | None = getattr(self._local, "held", None)
        if held is None or held.pid != os.getpid():
            held = self._local.held = _Held(self._pool)
        connection = held.connection

        def send() -> Any:
            connection.send_command("EVALSHA", sha, 1, self._prefix, *argv)
            return connection.read_response()

        return connection.retry.call_with_retry(send, lambda _: connection.disconnect())
