"""The overview's chart as geometry for an inline SVG: a pair of bars per minute (jobs
succeeded, runs failed), scaled to the busiest minute. Drawn on the server, so the page needs
no charting script. The minutes are ``conveyor.history.throughput``'s: the per-minute
aggregates every worker of the fleet writes, which outlive the pruning of jobs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH = 720
HEIGHT = 160
#: Room at the top for the scale's label.
TOP = 14


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    #: "succeeded" or "failed": the CSS class that colours it.
    kind: str
    #: The tooltip: the minute and its figure.
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    #: The figure at the top of the scale.
    scale: int
    #: Sums over the minutes drawn.
    succeeded: int
    failed: int


def chart(minutes: Sequence[Mapping[str, Any]]) -> Chart:
    """``minutes``: oldest first, each with ``succeeded`` and ``failed`` (runs retried or
    ended dead), as ``history.throughput`` gives them."""
    scale = max((max(m["succeeded"], m["failed"]) for m in minutes), default=0) or 1
    slot = WIDTH / max(len(minutes), 1)
    bar = slot * 0.4
    room = HEIGHT - TOP
    bars: list[Bar] = []
    for i, minute in enumerate(minutes):
        ago = len(minutes) - 1 - i
        when = "this minute" if ago == 0 else f"{ago} min ago"
        for offset, kind in ((0.1, "succeeded"), (0.5, "failed")):
            value = minute[kind]
            height = room * value / scale
            bars.append(
                Bar(
                    x=round(i * slot + offset * slot, 2),
                    y=round(HEIGHT - height, 2),
                    width=round(bar, 2),
                    height=round(height, 2),
                    kind=kind,
                    label=f"{when}: {value} {kind}",
                )
            )
    return Chart(
        WIDTH,
        HEIGHT,
        bars,
        scale,
        succeeded=sum(m["succeeded"] for m in minutes),
        failed=sum(m["failed"] for m in minutes),
    )
