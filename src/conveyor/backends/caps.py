"""Which queues have a cap on their running jobs, as every claim needs to know cheaply.

A claim asks before it picks its statements: with no cap anywhere it keeps to its one-statement
path, without a look at the caps table. The answer is kept for ``CAPS_TTL`` seconds, so a cap
set in another process binds this one's claims within about a second, and one set through this
process's backend binds at once (``forget``). Which queues are capped is all that is kept: the
caps themselves are read by the claim, inside its own transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

#: Seconds a process keeps the set of capped queues before reading it again.
CAPS_TTL = 1.0


class CappedQueues:
    def __init__(self, clock: Callable[[], float], ttl: float = CAPS_TTL) -> None:
        self._clock = clock
        self._ttl = ttl
        self._lock = threading.Lock()
        self._names: frozenset[str] = frozenset()
        self._read_at: float | None = None
        #: Moves on every forget(): a read that began before it must not be kept.
        self._generation = 0

    def get(self, load: Callable[[], Iterable[str]]) -> frozenset[str]:
        """The capped queues, read through ``load`` when the kept answer is too old."""
        now = self._clock()
        read_at = self._read_at
        # A clock that went backwards (an NTP step, a test's clock) also makes the answer old.
        if read_at is not None and read_at <= now < read_at + self._ttl:
            return self._names
        generation = self._generation
        names = frozenset(load())
        with self._lock:
            if generation == self._generation:
                self._names, self._read_at = names, now
        return names

    def forget(self) -> None:
        """Read again on the next claim: this process just changed a cap."""
        with self._lock:
            self._generation += 1
            self._read_at = None
