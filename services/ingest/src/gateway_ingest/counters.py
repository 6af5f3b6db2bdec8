"""The modem's frame counter: detects frames the modem sent that never reached us.

The counter is a uint8 that wraps 255 -> 0 and counts every frame the modem sends, whatever its
type. A REBOOTED frame starts a new sequence: no gap is counted for it, and the frame after it may
carry either the next counter or 1 (the modem's first frame after boot is 1). The first frame a
tracker sees only sets the baseline: frames lost before this process opened the port cannot be
counted from the counter alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway_common.serial_protocol import MessageType

__all__ = ["CounterTracker", "Gap"]

_FIRST_AFTER_BOOT = 1


@dataclass(frozen=True, slots=True)
class Gap:
    expected: int
    received: int
    missed: int
    """Number of frames the modem sent between the last one we saw and this one."""


class CounterTracker:
    def __init__(self) -> None:
        self._last: int | None = None
        self._after_reboot = False

    @property
    def last(self) -> int | None:
        return self._last

    def observe(self, counter: int, message_type: int) -> Gap | None:
        """Record one received frame; return the gap before it, if frames were missed."""
        last, after_reboot = self._last, self._after_reboot
        self._last = counter
        self._after_reboot = message_type == MessageType.REBOOTED
        if last is None or message_type == MessageType.REBOOTED:
            return None
        expected = (last + 1) & 0xFF
        if counter == expected or (after_reboot and counter == _FIRST_AFTER_BOOT):
            return None
        return Gap(expected=expected, received=counter, missed=(counter - expected) & 0xFF)
