"""The modem side of the serial link: its frame counter and the framing of what it sends.

docs/protocol.md section 1.1: the counter is a uint8, the first frame after boot is 1 and it
wraps 255 -> 0. The counter advances for every frame the modem sends, whether or not anybody
is listening on the other end of the link.
"""

from __future__ import annotations

from gateway_common.serial_protocol import MessageType, RebootReason, encode_frame

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
        self._counter = 0
        return self._frame(MessageType.REBOOTED, bytes((reason,)))

    def alp_data(self, alp: bytes) -> bytes:
        """An ALP_DATA frame carrying one ALP command (a sensor's unsolicited message)."""
        return self._frame(MessageType.ALP_DATA, alp)

    def log_line(self, text: str) -> bytes:
        """A LOGGING frame with ASCII text from the modem."""
        return self._frame(MessageType.LOGGING, text.encode("ascii"))

    def _frame(self, message_type: MessageType, payload: bytes) -> bytes:
        self._counter = (self._counter + 1) & 0xFF
        return encode_frame(self._counter, message_type, payload)
