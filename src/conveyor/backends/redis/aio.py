"""Scripts run from an event loop without a thread: the Redis engine's ``enqueue_async``.

Handing a call to a thread (conveyor.offload) costs a coroutine more than the round trip to a
local Redis, and redis-py's asyncio client about as much again. Here each thread keeps a
connection of its own (made as the client's pool makes them: same server, credentials,
database) whose socket its running event loop watches (a ``Pipe``): a call writes its command
and waits for its reply; calls that other coroutines of the loop make meanwhile are pipelined
behind it, and the replies come back in the order of the commands.

Only the happy path is taken here. ``Fallback`` sends the caller to the blocking path (on a
thread), which knows the rest: a connection that broke or timed out before the command went out
whole (dropped here, then the blocking path reconnects and retries with backoff, as it does for
its own calls: a script either ran whole or not at all), a script the server lost (NOSCRIPT:
loaded again there). A command that went out whole and then lost its connection before the
reply came may have run: ``Unanswered`` says so, and it is not sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
import weakref
from collections import deque
from typing import Any, cast

import redis
from redis.exceptions import NoScriptError

try:
    import hiredis
except ImportError:  # the parser of the redis extra; without it every call takes a thread
    _HIREDIS = False
else:
    _HIREDIS = True

from conveyor.offload import OFFLOAD

_BUFFER = 65536


def pack(args: tuple[Any, ...]) -> bytes | None:
    """The command ``args`` as the server reads it (texts, bytes and numbers), packed by
    hiredis in a quarter of the time redis-py's packer takes around it; None without hiredis."""
    if not _HIREDIS:
        return None
    try:
        return cast("bytes", hiredis.pack_command(args))
    except TypeError as exc:  # an argument of no type a command takes: as redis-py says it
        raise redis.DataError(str(exc)) from exc


class Fallback(Exception):
    """The call was not answered here, nor sent whole: run it on the blocking path."""


class Unanswered(Exception):
    """The command went out whole, then the connection broke (or timed out) before its reply:
    it may or may not have run. Sending it again could run it twice."""


def available(pool: Any) -> bool:
    """Whether the connections of ``pool`` can be driven from an event loop here: a plain or
    Unix socket (not TLS, whose non-blocking reads want more care), with hiredis to parse."""
    return _HIREDIS and not issubclass(pool.connection_class, redis.SSLConnection)


class Pipe:
    """A connected redis-py Connection whose socket one event loop at a time watches, closed
    once it broke, its thread ended or the backend closed."""

    def __init__(self, connection: Any) -> None:
        self.pid = os.getpid()
        self.broken = False
        self._timeout: float = connection.socket_timeout or 30.0
        # Past redis-py's handshake (AUTH, SELECT, ...) the socket is ours.
        self._sock = connection._sock
        self._sock.setblocking(False)
        self._fd = self._sock.fileno()
        self._news = select.poll()
        self._news.register(self._fd, select.POLLIN)
        self._reader = hiredis.Reader(encoding="utf-8", replyError=_error)
        #: The calls waiting for their replies, in order: each with its timer and where its
        #: command ends in the stream of bytes written to the socket.
        self._waiting: deque[tuple[asyncio.Future[Any], asyncio.TimerHandle, int]] = deque()
        self._unsent = b""
        self._queued = 0  # bytes handed to the socket's stream so far (sent or unsent)
        self._sent = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._disconnect = weakref.finalize(self, connection.disconnect)

    def call(self, command: bytes) -> asyncio.Future[Any]:
        """Send the packed ``command``; its reply (or a ResponseError) is the future's result,
        ``Fallback`` its exception when the connection broke."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._waiting:
                # Replies owed to a loop that stopped waiting would answer this one's calls.
                self.close()
                raise Fallback
            if self._loop is not None:
                self._loop.remove_reader(self._fd)  # a closed loop ignores it
            loop.add_reader(self._fd, self._readable)
            self._loop = loop
        if not self._waiting and self._news.poll(0):
            # Said while idle, before the loop could hear it: the server's end of the stream,
            # most likely. Read now, lest the command be sent into a closed connection and
            # come out unanswered though it never ran.
            self._readable()
            if self.broken:
                raise Fallback
        future = loop.create_future()
        self._queued += len(command)
        self._waiting.append((future, loop.call_later(self._timeout, self._expired), self._queued))
        if self._unsent:
            self._unsent += command
            return future
        try:
            sent = self._sock.send(command)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return future
        self._sent += sent
        if sent < len(command):
            self._unsent = command[sent:]
            loop.add_writer(self._fd, self._writable)
        return future

    def _writable(self) -> None:
        try:
            sent = self._sock.send(self._unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        self._sent += sent
        self._unsent = self._unsent[sent:]
        if not self._unsent and self._loop is not None:
            self._loop.remove_writer(self._fd)

    def _readable(self) -> None:
        try:
            data = self._sock.recv(_BUFFER)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()
            return
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                future, timer, _ = self._waiting.popleft()
                timer.cancel()
                if not future.done():  # a caller that was cancelled has nobody to tell
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError):
            self.close()

    def _expired(self) -> None:
        # The oldest call waited socket_timeout for its reply: the server is gone, or as
        # good as gone (the blocking path gives up after the same time).
        self.close()

    def close(self) -> None:
        """Fail every call waiting here, with Unanswered if its command went out whole and
        Fallback if not, and close the connection (on the loop's thread: the loop must forget
        the socket before it is closed)."""
        if self.broken:
            return
        self.broken = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._fd)
            loop.remove_writer(self._fd)
        waiting, self._waiting = self._waiting, deque()
        for future, timer, end in waiting:
            timer.cancel()
            if not future.done():
                future.set_exception(Unanswered() if end <= self._sent else Fallback())
        self._disconnect()

    def close_from_anywhere(self) -> None:
        """``close`` from any thread."""
        loop = self._loop
        if loop is not None and loop.is_running() and not _runs(loop):
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.close)
                return
        self.close()


def _runs(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _error(message: str) -> redis.ResponseError:
    """An error reply, as redis-py raises it (NOSCRIPT: a script the server lost)."""
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return redis.ResponseError(message)


class Pipes:
    """The Pipe of each thread, opened on first use (the connect blocks: on a thread)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._local = threading.local()
        self._open_pipes: weakref.WeakSet[Pipe] = weakref.WeakSet()
        self._closed = False

    async def call(self, *args: Any) -> Any:
        """The reply of the command ``args``; its error reply raised as a ResponseError."""
        pipe: Pipe | None = getattr(self._local, "pipe", None)
        if pipe is None or pipe.broken or pipe.pid != os.getpid():
            pipe = await self._open()
        reply = await pipe.call(cast("bytes", pack(args)))
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    async def _open(self) -> Pipe:
        if self._closed:
            raise Fallback
        pool = self._pool
        connection = pool.connection_class(**pool.connection_kwargs)
        try:
            await OFFLOAD.run(connection.connect)
        except redis.RedisError:
            raise Fallback from None
        pipe = Pipe(connection)
        if self._closed:  # while it connected
            pipe.close()
            raise Fallback
        current: Pipe | None = getattr(self._local, "pipe", None)
        if current is not None and not current.broken and current.pid == os.getpid():
            pipe.close()  # another coroutine of this thread opened one meanwhile
            return current
        self._local.pipe = pipe
        self._open_pipes.add(pipe)
        return pipe

    def close(self) -> None:
        """Close every thread's Pipe; calls from now on take the blocking path."""
        self._closed = True
        for pipe in list(self._open_pipes):
            pipe.close_from_anywhere()
