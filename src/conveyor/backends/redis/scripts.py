"""The Lua scripts of the Redis engine, one per state transition (lua/*.lua).

common.lua is put in front of every script, and deps.lua and breakers.lua in front of those
whose first line names them (``-- uses: deps, breakers``): each runs as one EVALSHA. Of that
shared code a script gets only the definitions it uses (``_used``): the server runs the whole
text on every call, creating each function anew, so a definition it never calls would cost
every call of it, and the clock (TIME) is read only by the scripts that look at NOW. A script
is loaded again when the server answers NOSCRIPT (a restart, a failover, SCRIPT FLUSH).

On a single server each thread sends its scripts on a connection of the pool it keeps (given
back when the thread ends): redis-py's own path takes a connection from the pool, polls it for
stale data and gives it back around every command, which costs more client time than the rest
of a call. Retries on a broken connection are the client's own (its Retry, as configured in
connection.py). A coroutine's ``enqueue_async`` goes out on a connection that its event loop
watches (aio.py). A Redis Cluster client routes each call itself.
"""

from __future__ import annotations

import os
import re
import select
import threading
import weakref
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoScriptError

from conveyor.backends.redis.aio import Fallback, Pipes, Unanswered, available, pack

_USES = "-- uses:"
#: What a broken connection raises (connection.py retries on the same).
_BROKEN = (redis.ConnectionError, redis.TimeoutError, ConnectionError)
#: A top-level definition of the shared code: ``local function name`` or ``local a, b =``.
_DEFINITION = re.compile(r"^local (?:function )?([\w, ]+)", re.MULTILINE)
_NAME = re.compile(r"[A-Za-z_]\w*")
_COMMENT = re.compile(r"--.*$", re.MULTILINE)


def _source(name: str) -> str:
    return (resources.files("conveyor.backends.redis") / "lua" / f"{name}.lua").read_text(
        encoding="utf-8"
    )


def script_text(name: str) -> str:
    """Script ``name`` with the shared code in front of it."""
    body = _source(name)
    first = body.split("\n", 1)[0]
    uses = [u.strip() for u in first[len(_USES) :].split(",")] if first.startswith(_USES) else []
    return "\n".join([*_used("\n".join([_source("common"), *map(_source, uses)]), body), body])


def _used(shared: str, body: str) -> list[str]:
    """The top-level definitions of ``shared`` that ``body`` needs, directly or through one
    another, in their order. A definition runs from its ``local`` line to the next one (so
    the ``if`` setting NOW stays with ``local NOW``)."""
    found = list(_DEFINITION.finditer(shared))
    starts = [m.start() for m in found]
    chunks = [shared[a:b] for a, b in zip(starts, [*starts[1:], len(shared)], strict=True)]
    defines = [{n.strip() for n in m[1].split(",")} for m in found]
    needed = set(_NAME.findall(_COMMENT.sub("", body)))
    kept = [False] * len(chunks)
    grown = True
    while grown:
        grown = False
        for i in reversed(range(len(chunks))):
            if not kept[i] and defines[i] & needed:
                kept[i] = grown = True
                needed |= set(_NAME.findall(_COMMENT.sub("", chunks[i])))
    return [chunk for chunk, keep in zip(chunks, kept, strict=True) if keep]


def _said_while_idle(connection: Any) -> bool:
    """Whether an idle connection has something to read, which it should not (the end of the
    stream, most likely): one poll(), no round trip."""
    sock = connection._sock  # redis-py's socket (aio.py drives it too)
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


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
        pool = self._pool
        self._pipes = Pipes(pool) if pool is not None and available(pool) else None

    def run(self, name: str, now: float | None, *args: Any, replay: bool = True) -> Any:
        """Run script ``name`` with "now" (None: the server's clock) and ``args``. A call whose
        connection broke once it was sent is sent again (with the client's backoff) unless
        ``replay`` is false, for a script that must not run twice (a second enqueue would be a
        second job): then Unanswered is raised, since it may or may not have run."""
        script = self._scripts.get(name)
        if script is None:
            script = self._client.register_script(script_text(name))
            self._scripts[name] = script
        argv = ("" if now is None else repr(now), *args)
        if self._pool is None:
            return script(keys=[self._prefix], args=argv)
        try:
            return self._evalsha(script.sha, argv, replay)
        except NoScriptError:
            script.sha = self._client.script_load(script.script)
            return self._evalsha(script.sha, argv, replay)

    async def run_async(self, name: str, now: float | None, *args: Any) -> Any:
        """``run`` from an event loop, without a thread (aio.py), with ``replay`` false: raises
        aio.Fallback when only ``run`` can do it (the script did not run), aio.Unanswered when
        the script may or may not have run."""
        script = self._scripts.get(name)
        if script is None or self._pipes is None:
            raise Fallback  # ``run`` loads it, or the client cannot be driven from a loop
        argv = ("" if now is None else repr(now), *args)
        try:
            return await self._pipes.call("EVALSHA", script.sha, 1, self._prefix, *argv)
        except NoScriptError:
            raise Fallback from None

    def close(self) -> None:
        """Close the connections of the event loops (the client closes its pool's)."""
        if self._pipes is not None:
            self._pipes.close()

    def _evalsha(self, sha: str, argv: tuple[Any, ...], replay: bool) -> Any:
        held: _Held | None = getattr(self._local, "held", None)
        if held is None or held.pid != os.getpid():
            held = self._local.held = _Held(self._pool)
        connection = held.connection
        if not replay and _said_while_idle(connection):
            # Ended by the server while idle (killed, timed out, restarted): its last words
            # are waiting. A command sent now would be read as unanswered, though it never ran.
            connection.disconnect()
        packed = pack(("EVALSHA", sha, 1, self._prefix, *argv))
        if packed is None:
            command = connection.pack_command("EVALSHA", sha, 1, self._prefix, *argv)
        else:
            command = [packed]
        # The call an application makes most (one enqueue) spends a fifth of its client time
        # in the Retry's machinery when nothing fails: it is entered only once a send failed.
        try:
            connection.send_packed_command(command)
        except _BROKEN:
            # Not sent whole, so not run (the server runs a command once it has all of it):
            # sent again on a new connection, with the client's backoff.
            connection.disconnect()
            connection.retry.call_with_retry(
                lambda: connection.send_packed_command(command), lambda _: connection.disconnect()
            )
        try:
            return connection.read_response()
        except _BROKEN as exc:
            connection.disconnect()
            if not replay:
                raise Unanswered(str(exc)) from exc

        def send() -> Any:
            connection.send_packed_command(command)
            return connection.read_response()

        return connection.retry.call_with_retry(send, lambda _: connection.disconnect())
