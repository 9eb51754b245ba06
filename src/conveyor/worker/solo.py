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
while the process holds nothing (no run, no prefetched job, no claim under way) and either
found nothing ready at their last claim or drain for suspects (below), and claim
nothing else until the suspect's run is settled (its outcome written, or its lease lost): if
the process dies meanwhile, the death is the suspect's own, and the rescue charges it.

A worker that never goes idle (a backlog, prefetch keeping it full) would never hold nothing,
so suspects would wait as long as the backlog lasts. Instead a busy worker asks about once a
second whether a suspect waits for it (``Backend.suspect_waiting``: a read of the suspects'
own, almost always empty, index; see ``conveyor.worker.drain``). If one does, it tries to take
the fleet's ``suspects`` lease in the database; the one worker holding it *drains*: it claims
nothing ordinary, hands its prefetched jobs back, lets its running jobs finish, then claims
suspects one after another, alone each time, for as long as any waits; then it gives the lease
up and fills up again. The other workers keep working all along. So suspects start within the
longest run the draining worker had under way plus about a second, then run one after another
on that one worker of the fleet (a worker that goes idle claims one at once, lease or not).
A draining worker that dies loses its lease with its life: another takes the lease over.
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
        #: This worker holds the fleet's ``suspects`` lease and makes room for suspects: it
        #: claims nothing else, hands back what it prefetched and lets its runs finish.
        self.draining = False
        #: Looks for waiting suspects made while draining (a fetcher that found none waits
        #: for the next one instead of asking again at once).
        self.looks = 0
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

    def drain(self, draining: bool) -> None:
        """Begin (True) or end making room for suspects."""
        if draining != self.draining:
            self.draining = draining
            self.wake()

    def looked(self) -> None:
        """Draining goes on after a look: fetchers that found no suspect may ask again."""
        self.looks += 1
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
