"""The overview's chart as geometry for an inline SVG: a pair of bars per minute (jobs
succeeded, attempts failed), scaled to the busiest minute. Drawn on the server, so the page
needs no charting script."""

from __future__ import annotations

from dataclasses import dataclass

from .recent import History

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


def chart(history: History) -> Chart:
    scale = max(history.busiest, 1)
    slot = WIDTH / max(len(history.minutes), 1)
    bar = slot * 0.4
    room = HEIGHT - TOP
    bars: list[Bar] = []
    for i, minute in enumerate(history.minutes):
        ago = len(history.minutes) - 1 - i
        when = "this minute" if ago == 0 else f"{ago} min ago"
        for offset, kind, value in (
            (0.1, "succeeded", minute.succeeded),
            (0.5, "failed", minute.failed),
        ):
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
    return Chart(WIDTH, HEIGHT, bars, scale)
