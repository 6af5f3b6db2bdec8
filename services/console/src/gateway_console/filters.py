"""How values read in the pages: durations, times, signal bars, numbers (Jinja filters)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from gateway_ctl.output import iso_time

if TYPE_CHECKING:
    from jinja2 import Environment

__all__ = ["BAR_LIMITS_DB", "bars", "duration", "install"]

#: Signal bars from the link budget (path loss, lower is better): 4 bars below 80 dB, 3 below
#: 95, 2 below 110, 1 below 125, none from 125 dB (near the sub-GHz receivers' sensitivity).
BAR_LIMITS_DB: Final = (80, 95, 110, 125)
#: (from how many seconds, seconds per unit, unit, decimals)
_UNITS: Final = ((172_800, 86_400, "d", 1), (7_200, 3_600, "h", 1), (120, 60, "min", 0))


def duration(seconds: float | None) -> str:
    """`42 s`, `12 min`, `3.5 h`, `2.0 d`; `—` when unknown."""
    if seconds is None:
        return "—"
    for least, unit_s, unit, decimals in _UNITS:
        if seconds >= least:
            return f"{seconds / unit_s:.{decimals}f} {unit}"
    return f"{seconds:.0f} s"


def bars(link_budget: int | None) -> int:
    """0 to 4 signal bars."""
    if link_budget is None:
        return 0
    return sum(1 for limit in BAR_LIMITS_DB if link_budget < limit)


def number(value: float | None, decimals: int = 0) -> str:
    return "—" if value is None else f"{value:,.{decimals}f}"


def epoch_ms(epoch_s: float | None) -> str:
    """For `data-time`: the page's script shows it in the viewer's time zone."""
    return "" if epoch_s is None else str(round(epoch_s * 1000))


def install(env: Environment) -> None:
    env.filters.update(
        duration=duration,
        bars=bars,
        number=number,
        iso=lambda epoch_s: iso_time(epoch_s, "seconds"),
        epoch_ms=epoch_ms,
        hex=lambda data: data.hex(" "),
    )
