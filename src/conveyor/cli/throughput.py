"""Jobs finished per minute, per queue, for ``conveyor top``.

Measured by the viewer from what every engine offers today: the counts of finished jobs
(succeeded, dead, cancelled) by queue, sampled once a frame; the rate is the growth of that
count over the last minute of samples (less, while the view is younger than a minute). So the
first frame, and ``top --once``, cannot know it yet and say so (None). Pruning finished jobs
makes a count shrink: such a drop counts as zero finishes, so a prune can hide the finishes
of the sample it falls in, never invent any.

When the database keeps per-minute aggregates of outcomes, ``FinishRate.per_minute`` is the
one place to read them instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from conveyor.job import JobState

#: Seconds of samples a rate is measured over.
WINDOW = 60.0

FINISHED = (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED)


def finished_by_queue(counts: Mapping[str, Mapping[JobState, int]]) -> dict[str, int]:
    return {queue: sum(by_state.get(s, 0) for s in FINISHED) for queue, by_state in counts.items()}


class FinishRate:
    """Feed it each sample of the counts; it answers jobs finished per minute by queue."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        # (time, finished jobs by queue, finishes since the previous sample by queue)
        self._samples: deque[tuple[float, dict[str, int], dict[str, int]]] = deque()

    def per_minute(
        self, at: float, counts: Mapping[str, Mapping[JobState, int]]
    ) -> dict[str, float | None]:
        """Add the sample of ``counts`` taken at ``at`` (database seconds); the rate of every
        queue in it, None until two samples lie apart."""
        finished = finished_by_queue(counts)
        if self._samples:
            _, previous, _ = self._samples[-1]
            grown = {q: max(n - previous.get(q, n), 0) for q, n in finished.items()}
        else:
            grown = {}
        self._samples.append((at, finished, grown))
        while len(self._samples) > 2 and at - self._samples[1][0] >= self.window:
            self._samples.popleft()
        first_at = self._samples[0][0]
        span = at - first_at
        if span <= 0:
            return {queue: None for queue in finished}
        rates: dict[str, float | None] = {}
        for queue in finished:
            done = sum(step.get(queue, 0) for _, _, step in list(self._samples)[1:])
            rates[queue] = done * 60.0 / span
        return rates
