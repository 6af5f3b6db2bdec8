"""When each sensor speaks: a time-ordered schedule of the sensors' messages.

Times are seconds since the modem booted. Sensors start staggered over the first interval; each
sends its EnergyConfigFile, then an EnergyFile every interval (its own: a downlink write changes
it, and the sensor then reports its new EnergyConfigFile at once); now and then somebody presses
the button, which yields a press and, shortly after, a release. A disabled sensor sends its
EnergyConfigFile instead of an EnergyFile.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence

    from gateway_simulator.sensors import Sensor

__all__ = ["Event", "EventKind", "Timeline"]

#: Delay between a sensor's EnergyConfigFile and its first EnergyFile.
FIRST_REPORT_DELAY_S = 0.05
#: How long the button stays pressed, at most (never more than 40 % of the interval).
MAX_PRESS_S = 1.0


class EventKind(enum.Enum):
    CONFIG = "config"
    RECONFIGURED = "reconfigured"
    ENERGY = "energy"
    BUTTON_PRESS = "button_press"
    BUTTON_RELEASE = "button_release"


@dataclass(frozen=True, slots=True, order=True)
class _Due:
    at_s: float
    order: int
    kind: EventKind = field(compare=False)
    sensor: Sensor = field(compare=False)
    generation: int = field(compare=False, default=0)


@dataclass(frozen=True, slots=True)
class Event:
    """One message of one sensor, due `at_s` seconds after boot."""

    at_s: float
    kind: EventKind
    device_id: str
    alp: bytes
    sensor: Sensor | None = field(default=None, compare=False)


class Timeline:
    """An endless, time-ordered stream of sensor messages."""

    def __init__(self, sensors: Sequence[Sensor], interval_s: float, rng: random.Random) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._rng = rng
        self._heap: list[_Due] = []
        self._order = itertools.count()
        slot_s = interval_s / max(1, len(sensors))
        for index, sensor in enumerate(sensors):
            start_s = index * slot_s + rng.uniform(0.0, slot_s / 2)
            self._push(start_s, EventKind.CONFIG, sensor)

    def next_event(self) -> Event:
        """The next message due, with its follow-ups scheduled."""
        due = heapq.heappop(self._heap)
        while due.kind is EventKind.ENERGY and due.generation != due.sensor.generation:
            due = heapq.heappop(self._heap)  # scheduled at an interval the sensor left
        sensor = due.sensor
        if due.kind is EventKind.CONFIG:
            alp = sensor.config_report()
            self._push(due.at_s + FIRST_REPORT_DELAY_S, EventKind.ENERGY, sensor)
        elif due.kind is EventKind.RECONFIGURED:
            alp = sensor.config_report()
            self._push(due.at_s + sensor.interval_s, EventKind.ENERGY, sensor)
        elif due.kind is EventKind.ENERGY:
            alp = sensor.energy_report() if sensor.enabled else sensor.config_report()
            self._push(due.at_s + sensor.interval_s, EventKind.ENERGY, sensor)
            if sensor.enabled and sensor.wants_button_press():
                offset_s = self._rng.uniform(0.1, 0.6) * sensor.interval_s
                self._push(due.at_s + offset_s, EventKind.BUTTON_PRESS, sensor)
        elif due.kind is EventKind.BUTTON_PRESS:
            alp = sensor.button_report(pressed=True)
            held_s = min(self._rng.uniform(0.2, MAX_PRESS_S), 0.4 * sensor.interval_s)
            self._push(due.at_s + held_s, EventKind.BUTTON_RELEASE, sensor)
        else:
            alp = sensor.button_report(pressed=False)
        return Event(due.at_s, due.kind, sensor.device_id, alp, sensor)

    def reconfigured(self, sensor: Sensor, at_s: float) -> None:
        """The sensor took new values at `at_s`: it reports them next, then keeps its new
        interval (what was scheduled at the old one is dropped)."""
        self._push(at_s + FIRST_REPORT_DELAY_S, EventKind.RECONFIGURED, sensor)

    def _push(self, at_s: float, kind: EventKind, sensor: Sensor) -> None:
        heapq.heappush(self._heap, _Due(at_s, next(self._order), kind, sensor, sensor.generation))
