"""Small inline SVG charts, computed here so the page needs no script: plain data in,
coordinates out (the template draws them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The drawing's own units; the SVG scales to its box (viewBox), so the page decides the size.
WIDTH, HEIGHT = 120.0, 32.0
PAD = 1.5


@dataclass(frozen=True)
class Spark:
    """One sparkline: its polyline's points, its peak and its last value."""

    points: str
    peak: float
    last: float
    label: str


def sparkline(values: Sequence[float | None], label: str) -> Spark:
    """A sparkline of ``values`` (oldest first; None: no data, drawn as 0) scaled to its peak."""
    numbers = [v or 0.0 for v in values]
    peak = max(numbers, default=0.0)
    n = len(numbers)
    step = (WIDTH - 2 * PAD) / (n - 1) if n > 1 else 0.0
    scale = (HEIGHT - 2 * PAD) / peak if peak > 0 else 0.0
    points = " ".join(
        f"{PAD + i * step:.1f},{HEIGHT - PAD - v * scale:.1f}" for i, v in enumerate(numbers)
    )
    return Spark(points, peak, numbers[-1] if numbers else 0.0, label)


def bar(ratio: float) -> float:
    """A gauge's filled width in percent, 0 to 100."""
    return round(min(1.0, max(0.0, ratio)) * 100, 1)
