"""Bar charts drawn on the server as inline SVG: no chart library, no script, nothing to load.

A chart is a list of bars with heights scaled to the tallest slot; the template draws them. Inline SVG
also passes the pages' strict CSP and stays readable without JavaScript.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ...model import Activity

WIDTH, HEIGHT = 600, 120


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    start: datetime


@dataclass(frozen=True)
class Chart:
    title: str
    css: str
    bars: Sequence[Bar]
    total: int
    peak: int
    width: int = WIDTH
    height: int = HEIGHT


def chart(title: str, css: str, slots: Sequence[Activity], values: Sequence[int]) -> Chart:
    peak = max(values, default=0)
    step = WIDTH / max(len(values), 1)
    bars = []
    for i, (slot, value) in enumerate(zip(slots, values, strict=True)):
        h = 0.0 if peak == 0 else (HEIGHT - 4) * value / peak
        bars.append(
            Bar(x=i * step + 0.5, y=HEIGHT - h, width=max(step - 1, 1), height=h, value=value, start=slot.start)
        )
    return Chart(title=title, css=css, bars=bars, total=sum(values), peak=peak)


def activity_charts(slots: Sequence[Activity]) -> list[Chart]:
    return [
        chart("Succeeded per minute", "done", slots, [s.done for s in slots]),
        chart("Failed (dead) and cancelled per minute", "dead", slots, [s.dead + s.cancelled for s in slots]),
    ]
