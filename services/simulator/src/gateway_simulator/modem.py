"""The modem side of the serial link: its frame counter and the framing of what it sends.

The counter follows the modem's rule (gateway_dash7.counter: a uint8, the first frame after boot
is 1, it wraps 255 -> 0). It advances for every frame the modem sends, whether or not anybody is
listening on the other end of the link.
"""

from __future__ import annotations

from gateway_dash7 import (
    FIRST_COUNTER_AFTER_BOOT,
    MessageType,
    RebootReason,
    encode_frame,
    encode_log_text,
    encode_reboot_reason,
    next_counter,
)

__all__ = ["Modem"]


class Modem:
    """Frames messages the way the Sub-IoT `gateway` application does."""

    def __init__(self) -> None:
        self._counter = 0

    @property
    def counter(self) -> int:
        """The counter of the last frame sent (0 before the first one)."""
        return self._counter

    def boot(self, reason: RebootReason = RebootReason.POWER_ON) -> bytes:
        """The REBOOTED frame a modem sends when it starts; its counter restarts at 1."""
        return self._send(
            FIRST_COUNTER_AFTER_BOOT, MessageType.REBOOTED, encode_reboot_reason(reason)
        )

    def alp_data(self, alp: bytes) -> bytes:
        """An ALP_DATA frame carrying one ALP command (a sensor's unsolicited message)."""
        return self._send(next_counter(self._counter), MessageType.ALP_DATA, alp)

    def ping_response(self) -> bytes:
        """The PING_RESPONSE a modem answers a host's PING_REQUEST with."""
        return self._send(next_counter(self._counter), MessageType.PING_RESPONSE, b"\x02")

    def log_line(self, text: str) -> bytes:
        """A LOGGING frame with ASCII text from the modem."""
        return self._send(next_counter(self._counter), MessageType.LOGGING, encode_log_text(text))

    def _send(self, counter: int, message_type: MessageType, payload: bytes) -> bytes:
        self._counter = counter
        return encode_frame(counter, message_type, payload)
