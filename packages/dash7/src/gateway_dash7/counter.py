"""The modem's frame counter (docs/protocol.md section 1.1): the rule, and the gaps it reveals.

The counter is a uint8 that wraps 255 -> 0 and counts every frame the modem sends, whatever its
type. A REBOOTED frame starts a new sequence: no gap is counted for it, and the frame after it may
carry either the next counter or 1 (the modem's first frame after boot is 1).

A tracker can be resumed from the position an earlier observer reached (`CounterPosition`), so
the frames sent while nobody listened are counted as a gap on the first frame after the resume.
Without a position the first frame only sets the baseline. The counter cannot tell how many
times it wrapped while nobody listened: a gap across a silence long enough for 256 frames at
line rate is a lower bound (`may_have_wrapped`). Keeping the position across restarts is the
owner's business, not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway_dash7.serial import BITS_PER_BYTE, HEADER_SIZE, MessageType

__all__ = [
    "COUNTER_VALUES",
    "FIRST_COUNTER_AFTER_BOOT",
    "CounterPosition",
    "CounterTracker",
    "Gap",
    "may_have_wrapped",
    "next_counter",
]

COUNTER_VALUES: Final = 256
FIRST_COUNTER_AFTER_BOOT: Final = 1
"""The counter of the modem's first frame after boot (its REBOOTED frame)."""


def next_counter(counter: int) -> int:
    """The counter of the frame after one carrying `counter` (uint8, 255 wraps to 0)."""
    return (counter + 1) % COUNTER_VALUES


@dataclass(frozen=True, slots=True)
class Gap:
    expected: int
    received: int
    missed: int
    """Number of frames the modem sent between the last one we saw and this one (modulo 256)."""
    after_restart: bool = False
    """The last frame seen was seen before the tracker was resumed (by an earlier observer)."""


@dataclass(frozen=True, slots=True)
class CounterPosition:
    """Where the modem's sequence stood after the last frame seen."""

    counter: int
    after_reboot: bool
    """That frame was REBOOTED: the next one may restart at 1."""


class CounterTracker:
    """Follows the counters of the frames received; reports the frames missed between them."""

    def __init__(self, resume_from: CounterPosition | None = None) -> None:
        self._last: int | None = None if resume_from is None else resume_from.counter
        self._after_reboot = False if resume_from is None else resume_from.after_reboot
        self._resumed = resume_from is not None

    @property
    def last(self) -> int | None:
        return self._last

    @property
    def position(self) -> CounterPosition | None:
        """The position after the frame just observed (None before any frame)."""
        if self._last is None:
            return None
        return CounterPosition(self._last, self._after_reboot)

    def observe(self, counter: int, message_type: int) -> Gap | None:
        """Record one received frame; return the gap before it, if frames were missed."""
        last, after_reboot, after_restart = self._last, self._after_reboot, self._resumed
        self._last = counter
        self._after_reboot = message_type == MessageType.REBOOTED
        self._resumed = False
        if last is None or message_type == MessageType.REBOOTED:
            return None
        expected = next_counter(last)
        if counter == expected or (after_reboot and counter == FIRST_COUNTER_AFTER_BOOT):
            return None
        return Gap(expected, counter, (counter - expected) % COUNTER_VALUES, after_restart)


def may_have_wrapped(downtime_s: float, baudrate: int) -> bool:
    """Could the modem have sent 256 frames or more in `downtime_s` at this line rate?"""
    shortest_frame_s = HEADER_SIZE * BITS_PER_BYTE / baudrate
    return downtime_s >= COUNTER_VALUES * shortest_frame_s
