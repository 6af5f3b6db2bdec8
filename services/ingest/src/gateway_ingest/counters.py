"""The modem's frame counter: detects frames the modem sent that never reached us.

The counter is a uint8 that wraps 255 -> 0 and counts every frame the modem sends, whatever its
type. A REBOOTED frame starts a new sequence: no gap is counted for it, and the frame after it may
carry either the next counter or 1 (the modem's first frame after boot is 1).

Across an ingest restart the tracker is seeded from the last state ingest persisted in Redis
(`CounterState`), so the frames the modem sent while no ingest held the port are counted as a
gap on the first frame after the start. Without a persisted state (the very first start) the
first frame only sets the baseline. The counter cannot tell how many times it wrapped while
nobody listened: a gap across a downtime long enough for 256 frames at line rate is a lower bound
(`may_have_wrapped`).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway_common.serial_protocol import BITS_PER_BYTE, HEADER_SIZE, MessageType

__all__ = ["CounterState", "CounterTracker", "Gap", "may_have_wrapped"]

_FIRST_AFTER_BOOT = 1
_COUNTER_VALUES = 256


@dataclass(frozen=True, slots=True)
class Gap:
    expected: int
    received: int
    missed: int
    """Number of frames the modem sent between the last one we saw and this one (modulo 256)."""
    after_restart: bool = False
    """The last frame seen was seen by an earlier ingest process (a persisted state)."""


@dataclass(frozen=True, slots=True)
class CounterState:
    """What the tracker knows after a frame: persisted so that the next ingest can go on."""

    counter: int
    after_reboot: bool
    """The frame was REBOOTED: the next one may restart at 1."""
    seen_at: float
    """When the frame was received (Unix time, s)."""


class CounterTracker:
    def __init__(self, seed: CounterState | None = None) -> None:
        self._last: int | None = None if seed is None else seed.counter
        self._after_reboot = False if seed is None else seed.after_reboot
        self._seeded = seed is not None

    @property
    def last(self) -> int | None:
        return self._last

    def state(self, seen_at: float) -> CounterState | None:
        """The state to persist after the frame just observed (None before any frame)."""
        if self._last is None:
            return None
        return CounterState(self._last, self._after_reboot, seen_at)

    def observe(self, counter: int, message_type: int) -> Gap | None:
        """Record one received frame; return the gap before it, if frames were missed."""
        last, after_reboot, after_restart = self._last, self._after_reboot, self._seeded
        self._last = counter
        self._after_reboot = message_type == MessageType.REBOOTED
        self._seeded = False
        if last is None or message_type == MessageType.REBOOTED:
            return None
        expected = (last + 1) & 0xFF
        if counter == expected or (after_reboot and counter == _FIRST_AFTER_BOOT):
            return None
        return Gap(expected, counter, (counter - expected) & 0xFF, after_restart)


def may_have_wrapped(downtime_s: float, baudrate: int) -> bool:
    """Could the modem have sent 256 frames or more in `downtime_s` at this line rate?"""
    shortest_frame_s = HEADER_SIZE * BITS_PER_BYTE / baudrate
    return downtime_s >= _COUNTER_VALUES * shortest_frame_s
