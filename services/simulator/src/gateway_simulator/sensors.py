"""Simulated DASH7 energy sensors: a three-phase meter behind each, and its radio link.

Each sensor is driven by its own random generator derived from the seed, so the same seed gives
the same UIDs and the same readings on every run. Units follow docs/protocol.md section 3:
cumulative energies in Wh / VAh, currents in mA, voltages in whole volts.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway_dash7 import (
    AppFile,
    ButtonFile,
    D7Status,
    EnergyConfigFile,
    EnergyFile,
    device_id,
    encode_unsolicited,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["UID_OUI", "Behaviour", "Meter", "Sensor", "make_sensors", "sensor_uid"]

#: First three bytes of every simulated UID (an EUI-64 prefix seen on real modules); it starts
#: with a zero byte, which exercises the "no zero-padding" rule of DEVICE_ID.
UID_OUI = bytes.fromhex("000B57")
PHASES = 3
MAX_CURRENT_MA = 60_000
MIN_VOLTAGE_V = 225.0
MAX_VOLTAGE_V = 240.0
#: Transmit power of the sensors: rx_level (-dBm) = link budget - TX_EIRP_DBM.
TX_EIRP_DBM = 14
MIN_LINK_BUDGET_DB = 40
MAX_LINK_BUDGET_DB = 140
BUTTON_ID = 0  # button 1 (bit 0 of buttons_state)


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How often the sensors report and misbehave."""

    interval_s: float
    invalid_probability: float = 0.0
    button_probability: float = 0.0


def sensor_uid(seed: int, index: int) -> bytes:
    """The 8-byte UID of sensor `index`: a fixed prefix and 5 bytes hashed from the seed."""
    digest = hashlib.sha256(f"gateway-sim:{seed}:{index}".encode()).digest()
    return UID_OUI + digest[:5]


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


class Meter:
    """A three-phase meter: currents and voltages wander, energies accumulate."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._base_ma = [self._pick_load() for _ in range(PHASES)]
        self._current_ma = list(self._base_ma)
        self._voltage_v = [rng.uniform(228.0, 236.0) for _ in range(PHASES)]
        self._power_factor = [rng.uniform(0.85, 0.99) for _ in range(PHASES)]
        self._active_wh = [rng.uniform(10_000.0, 2_000_000.0) for _ in range(PHASES)]
        self._apparent_vah = [wh * rng.uniform(1.02, 1.2) for wh in self._active_wh]

    def _pick_load(self) -> float:
        if self._rng.random() < 0.1:  # an almost idle phase
            return self._rng.uniform(0.0, 300.0)
        return self._rng.uniform(500.0, 25_000.0)

    def advance(self, elapsed_s: float) -> None:
        """Let `elapsed_s` seconds pass: the load drifts and the energy counters grow."""
        rng = self._rng
        for phase in range(PHASES):
            base = self._base_ma[phase]
            drift = 0.3 * (base - self._current_ma[phase]) + rng.gauss(0.0, 0.08 * base + 20.0)
            self._current_ma[phase] = _clamp(self._current_ma[phase] + drift, 0.0, MAX_CURRENT_MA)
            self._voltage_v[phase] = _clamp(
                self._voltage_v[phase] + rng.gauss(0.0, 0.6), MIN_VOLTAGE_V, MAX_VOLTAGE_V
            )
            apparent_w = self._voltage_v[phase] * self._current_ma[phase] / 1000.0
            self._apparent_vah[phase] += apparent_w * elapsed_s / 3600.0
            self._active_wh[phase] += apparent_w * self._power_factor[phase] * elapsed_s / 3600.0

    def reading(self) -> EnergyFile:
        """What the meter shows now (energies truncated to whole Wh / VAh, as counters are)."""
        return EnergyFile(
            apparent_energy_vah=_triple(self._apparent_vah, int),
            active_energy_wh=_triple(self._active_wh, int),
            current_ma=_triple(self._current_ma, round),
            voltage_v=_triple(self._voltage_v, round),
        )


def _triple(values: list[float], convert: Callable[[float], int]) -> tuple[int, int, int]:
    return (convert(values[0]), convert(values[1]), convert(values[2]))


class Sensor:
    """One DASH7 energy sensor; each method returns the ALP command the modem would forward."""

    def __init__(self, uid: bytes, rng: random.Random, behaviour: Behaviour) -> None:
        self.uid = uid
        self._rng = rng
        self._behaviour = behaviour
        self._meter = Meter(rng)
        self._last_reading = self._meter.reading()
        self._base_link_budget = rng.randint(60, 115)
        self._channel_index = rng.choice((0, 8, 16, 24))
        self._sequence = rng.randrange(256)
        self.interval_s = behaviour.interval_s
        """The reporting interval now (a downlink write changes it)."""
        self.enabled = True
        """Measuring (a downlink write may turn it off)."""
        self.generation = 0
        """Grows when the interval changes: reports scheduled before are dropped."""

    @property
    def device_id(self) -> str:
        """The DEVICE_ID the gateway publishes this sensor under (hex, no zero-padding)."""
        return device_id(self.uid)

    def config_report(self) -> bytes:
        """The EnergyConfigFile a sensor sends when it starts, and after a write of it."""
        config = EnergyConfigFile(max(1, round(self.interval_s)), enabled=self.enabled)
        return self._message(config)

    def apply(self, interval_s: int, enabled: bool) -> None:
        """A downlink write of the EnergyConfigFile: new values from now on."""
        self.interval_s = float(interval_s)
        self.enabled = enabled
        self.generation += 1

    def energy_report(self) -> bytes:
        """One periodic EnergyFile; sometimes the meter cannot be read and values are stale."""
        self._meter.advance(self.interval_s)
        if self._rng.random() < self._behaviour.invalid_probability:
            stale = self._last_reading
            reading = stale._replace(measurement_valid=False)
        else:
            reading = self._meter.reading()
            self._last_reading = reading
        return self._message(reading)

    def wants_button_press(self) -> bool:
        """Whether somebody presses the button during this reporting interval."""
        return self._rng.random() < self._behaviour.button_probability

    def button_report(self, pressed: bool) -> bytes:
        """The ButtonFile sent when button 1 is pressed (edge flag set) or released."""
        return self._message(ButtonFile(BUTTON_ID, mask=int(pressed), buttons_state=int(pressed)))

    def _message(self, file: AppFile) -> bytes:
        """The ALP command the modem forwards: the file, then this sensor's status."""
        return encode_unsolicited(file.file_id, file.encode(), self.status())

    def status(self) -> D7Status:
        """The D7 interface status the modem reports for this sensor's next message."""
        link_budget = int(
            _clamp(
                self._base_link_budget + self._rng.randint(-3, 3),
                MIN_LINK_BUDGET_DB,
                MAX_LINK_BUDGET_DB,
            )
        )
        self._sequence = (self._sequence + 1) & 0xFF
        return D7Status(
            address=self.uid,
            rx_level=link_budget - TX_EIRP_DBM,
            link_budget=link_budget,
            channel_index=self._channel_index,
            fifo_token=self._rng.randrange(256),
            sequence=self._sequence,
        )


def make_sensors(count: int, seed: int, behaviour: Behaviour) -> list[Sensor]:
    """`count` sensors whose UIDs and readings depend only on `seed`."""
    return [
        Sensor(sensor_uid(seed, index), random.Random(f"{seed}:{index}"), behaviour)
        for index in range(count)
    ]
