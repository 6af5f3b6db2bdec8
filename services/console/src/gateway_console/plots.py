"""Line plots as inline SVG geometry, computed on the server: no script draws them.

A series is cut where two consecutive points are further apart than `gap_s` (a silent device
shows as a gap, never as a line across the silence) and where a value is missing (an invalid
reading). A lone point is drawn as a dot (a zero-length segment with a round cap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from gateway_console.history import Point, Triple

__all__ = ["HEIGHT", "WIDTH", "Plot", "Series", "Tick", "device_plots", "line_plot"]

WIDTH: Final = 720
HEIGHT: Final = 180
LEFT: Final = 64
RIGHT: Final = 12
TOP: Final = 10
BOTTOM: Final = 24
X_TICKS: Final = 5
Y_TICKS: Final = 4


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    css_class: str
    path: str
    """SVG path data; empty when the series has no value in the window."""


@dataclass(frozen=True, slots=True)
class Tick:
    position: float
    label: str
    at: float | None = None
    """For a time tick: epoch seconds (the page shows it in the viewer's time zone)."""


@dataclass(frozen=True, slots=True)
class Plot:
    title: str
    unit: str
    series: tuple[Series, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    points: int
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return self.points == 0


def _label(value: float, span: float) -> str:
    if span >= 100:
        return f"{value:,.0f}"
    if span >= 1:
        return f"{value:,.1f}"
    return f"{value:,.3f}"


def _path(
    points: Sequence[tuple[float, float | None]],
    x_of: Callable[[float], float],
    y_of: Callable[[float], float],
    gap_s: float,
) -> str:
    parts: list[str] = []
    previous: float | None = None
    for at, value in points:
        if value is None:
            previous = None
            continue
        x, y = x_of(at), y_of(value)
        joined = previous is not None and at - previous <= gap_s
        parts.append(f"L{x:.1f} {y:.1f}" if joined else f"M{x:.1f} {y:.1f}h0")
        previous = at
    return "".join(parts)


def line_plot(
    title: str,
    unit: str,
    times: Sequence[float],
    columns: Sequence[tuple[str, str, Sequence[float | None]]],
    *,
    start: float,
    end: float,
    gap_s: float,
) -> Plot:
    """One plot of several series (name, CSS class, values aligned with `times`) over a window."""
    values = [v for _n, _c, column in columns for v in column if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad
    span_t = max(end - start, 1e-9)

    def x_of(at: float) -> float:
        return LEFT + (at - start) / span_t * (WIDTH - LEFT - RIGHT)

    def y_of(value: float) -> float:
        return HEIGHT - BOTTOM - (value - low) / (high - low) * (HEIGHT - TOP - BOTTOM)

    series = tuple(
        Series(name, css, _path(list(zip(times, column, strict=True)), x_of, y_of, gap_s))
        for name, css, column in columns
    )
    x_ticks = tuple(
        Tick(x_of(at), "", at)
        for at in (start + span_t * i / (X_TICKS - 1) for i in range(X_TICKS))
    )
    y_ticks = tuple(
        Tick(y_of(v), _label(v, high - low))
        for v in (low + (high - low) * i / (Y_TICKS - 1) for i in range(Y_TICKS))
    )
    return Plot(title, unit, series, x_ticks, y_ticks, points=len(values))


_PHASES: Final = (("phase 1", "s1"), ("phase 2", "s2"), ("phase 3", "s3"))


def device_plots(
    points: Sequence[Point], *, start: float, end: float, gap_s: float
) -> tuple[Plot, ...]:
    """Link budget (every record), voltages per phase, and the active energy each phase used
    since the window's first valid reading (the meters' counters differ by orders of
    magnitude; what they added is what shows a consumption). Invalid readings are left out."""
    readings = [p for p in points if p.energy]
    valid = [p if p.valid else None for p in readings]
    times = [p.at for p in readings]

    def phase(pick: Callable[[Point], Triple | None], i: int, scale: float) -> list[float | None]:
        column: list[float | None] = []
        for p in valid:
            triple = None if p is None else pick(p)
            column.append(None if triple is None else triple[i] / scale)
        return column

    def used(i: int) -> list[float | None]:
        column = phase(lambda p: p.active_energy_wh, i, 1e3)
        base = next((v for v in column if v is not None), 0.0)
        return [None if v is None else v - base for v in column]

    window = {"start": start, "end": end, "gap_s": gap_s}
    volts = [(n, css, phase(lambda p: p.voltage_v, i, 1.0)) for i, (n, css) in enumerate(_PHASES)]
    return (
        line_plot(
            "Link budget", "dB (path loss, lower is better)", [p.at for p in points],
            [("link budget", "s0", [float(p.link_budget) for p in points])], **window,
        ),
        line_plot("Voltage", "V", times, volts, **window),
        line_plot(
            "Active energy", "kWh used since the window's first reading", times,
            [(n, css, used(i)) for i, (n, css) in enumerate(_PHASES)], **window,
        ),
    )  # fmt: skip
