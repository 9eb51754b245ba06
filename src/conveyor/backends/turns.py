"""Claiming from several queues in turns, the same way on every engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

Row = tuple[Any, ...]


def claim_in_turns(
    queues: Sequence[str],
    turn: int,
    limit: int,
    rooms: Mapping[str, int],
    claim_queue: Callable[[str, int], list[Row]],
) -> list[Row]:
    """Up to ``limit`` rows, queue after queue, starting with a different queue each ``turn``
    so no queue starves the others; a queue named in ``rooms`` (a capped one) gives at most
    the room its cap leaves."""
    rows: list[Row] = []
    start = turn % max(len(queues), 1)
    for queue in [*queues[start:], *queues[:start]]:
        remaining = limit - len(rows)
        if remaining <= 0:
            break
        take = min(remaining, rooms.get(queue, remaining))
        if take > 0:
            rows += claim_queue(queue, take)
    return rows
