"""Poison isolation on the worker's side: a suspect runs alone in this process.

A suspect is a job whose worker died, or whose lease expired, while that worker held other jobs
too (see ``Backend.claim_suspect``). What a crash takes with it depends on where the job runs:

- on the event loop or a thread (the default), a job that kills its process (``os._exit``, a
  segfault, the OOM killer) kills this whole worker process, and with it every job the process
  held, running or prefetched. With ``conveyor worker --processes N`` each process is a worker
  of its own: only that one's jobs are lost, and the supervisor starts a new one.
- with ``isolation="process"`` the job runs in a child process of its own: a crash ends that
  child only, the worker records it as the run's failure (``ChildProcessDied``), and no other
  job is touched. Such a job never becomes a suspect through its own crash.

So "alone" means: the only job this worker process holds. The fetchers claim a suspect only
while the process holds nothing (no run, no prefetched job, no claim under way), and claim
nothing else until the suspect's run is settled (its outcome written, or its lease lost): if
the process dies meanwhile, the death is the suspect's own, and the rescue charges it.
"""

from __future__ import annotations

import asyncio


class Solo:
    """The state one worker's fetchers share to keep a suspect alone."""

    def __init__(self) -> None:
        #: The suspect run this worker holds, until it is settled.
        self.token: str | None = None
        #: A fetcher is claiming a suspect: every other claim waits.
        self.claiming_suspect = False
        #: Ordinary claims under way: a suspect waits until none is.
        self.claims = 0
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def blocks_claims(self) -> bool:
        """No claim now: a suspect is being claimed, or runs."""
        return self.claiming_suspect or self.token is not None

    async def changed(self) -> None:
        """Wait for the next change (or ``wake``)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        await future

    def wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def claim_started(self) -> None:
        self.claims += 1

    def claim_ended(self) -> None:
        self.claims -= 1
        if self.claims == 0:
            self.wake()

    def suspect_claim_started(self) -> None:
        self.claiming_suspect = True

    def suspect_claim_ended(self, token: str | None) -> None:
        self.claiming_suspect = False
        self.token = token
        self.wake()

    def settled(self, token: str) -> None:
        """A run of this worker was settled: if it was the suspect's, claims resume."""
        if token == self.token:
            self.token = None
            self.wake()
