"""What the demo shows: a live table per device on a terminal, one line per message otherwise."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from gateway_devkit.demo.messages import ACTIVE_ENERGY, BUTTON, LINK_OK, SIGNAL, VOLTAGE

if TYPE_CHECKING:
    from gateway_devkit.demo.messages import Message


@dataclass(slots=True)
class DeviceView:
    last_reading_ms: int | None = None
    active_wh: tuple[Any, ...] = ()
    voltage_v: tuple[Any, ...] = ()
    link_budget: Any = None
    button: Any = None
    meter_ok: Any = None
    ddata: int = 0
    births: int = 0


@dataclass(slots=True)
class Dashboard:
    """What has been received, per device."""

    devices: dict[str, DeviceView] = field(default_factory=dict)
    ddata: int = 0
    births: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    notices: list[str] = field(default_factory=list)

    def add(self, message: Message) -> None:
        view = self.devices.setdefault(message.device_id, DeviceView())
        if message.kind == "DBIRTH":
            self.births += 1
            view.births += 1
            return
        self.ddata += 1
        view.ddata += 1
        values = message.metrics
        view.last_reading_ms = message.timestamp_ms
        view.link_budget = values.get(SIGNAL, view.link_budget)
        view.meter_ok = values.get(LINK_OK, view.meter_ok)
        view.button = values.get(BUTTON, view.button)
        if ACTIVE_ENERGY[0] in values:
            view.active_wh = tuple(values.get(name) for name in ACTIVE_ENERGY)
            view.voltage_v = tuple(values.get(name) for name in VOLTAGE)

    def render(self) -> Group:
        table = Table(title="SCorp-io messages (mqtts/demo/#)", title_justify="left")
        for title in ("device", "last reading", "active energy Wh (P1 / P2 / P3)", "voltage V"):
            table.add_column(title)
        for title in ("link budget", "meter", "button", "DDATA", "DBIRTH"):
            table.add_column(title, justify="right")
        for device_id, view in sorted(self.devices.items()):
            table.add_row(
                device_id,
                _clock(view.last_reading_ms),
                " / ".join(f"{v:,}" if isinstance(v, int) else "?" for v in view.active_wh),
                " / ".join(str(v) for v in view.voltage_v),
                "" if view.link_budget is None else f"{view.link_budget} dB",
                _flag(view.meter_ok, "ok", "[red]stale[/red]"),
                _flag(view.button, "[bold yellow]pressed[/]", "released"),
                str(view.ddata),
                "✓" if view.births else "[red]none[/red]",
            )
        elapsed = time.monotonic() - self.started
        footer = Text(
            f"{self.ddata} DDATA, {self.births} DBIRTH in {elapsed:.0f} s — Ctrl-C stops",
            style="dim",
        )
        return Group(table, footer, *(Text(n, style="bold red") for n in self.notices))


def _clock(timestamp_ms: int | None) -> str:
    if timestamp_ms is None:
        return ""
    return datetime.fromtimestamp(timestamp_ms / 1000).astimezone().strftime("%H:%M:%S.%f")[:-3]


def _flag(value: Any, true_text: str, false_text: str) -> str:
    if value is None:
        return ""
    return true_text if value else false_text


def plain_line(message: Message) -> str:
    """One line per message, for a log file or a pipe."""
    values = message.metrics
    parts = [_clock(message.timestamp_ms) or "-", message.kind, message.device_id]
    if message.kind == "DDATA":
        if ACTIVE_ENERGY[0] in values:
            parts.append("active_wh=" + ",".join(str(values.get(n)) for n in ACTIVE_ENERGY))
            parts.append("voltage_v=" + ",".join(str(values.get(n)) for n in VOLTAGE))
        for label, name in (("button", BUTTON), ("meter_ok", LINK_OK), ("link_budget", SIGNAL)):
            if name in values:
                parts.append(f"{label}={values[name]}")
    else:
        parts.append(f"metrics={len(values)}")
    return " ".join(parts)
