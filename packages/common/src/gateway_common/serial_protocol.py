"""The Sub-IoT serial frame format (docs/protocol.md section 1.1): constants, CRC and encoding.

Shared by ingest (which parses frames), the simulator (which writes them) and the tests.
"""

from __future__ import annotations

import binascii
import enum
from typing import Final

__all__ = [
    "BITS_PER_BYTE",
    "HEADER_SIZE",
    "MAX_PAYLOAD",
    "SYNC",
    "MessageType",
    "RebootReason",
    "crc16",
    "encode_frame",
]

SYNC: Final = b"\xc0\x00"
"""Sync byte 0xC0 followed by protocol version 0x00."""
HEADER_SIZE: Final = 7
BITS_PER_BYTE: Final = 10
"""8N1 on the wire: a start bit, 8 data bits, a stop bit."""
MAX_PAYLOAD: Final = 255


class MessageType(enum.IntEnum):
    ALP_DATA = 1
    PING_REQUEST = 2
    PING_RESPONSE = 3
    LOGGING = 4
    REBOOTED = 5


class RebootReason(enum.IntEnum):
    POWER_ON = 0
    WATCHDOG = 1
    SOFTWARE = 2
    RESET_PIN = 3
    OTHER = 254
    UNKNOWN = 255


def crc16(payload: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0)."""
    return binascii.crc_hqx(payload, 0xFFFF)


def encode_frame(counter: int, message_type: int, payload: bytes) -> bytes:
    """One serial frame: sync, version, counter, type, length, big-endian CRC, payload."""
    if not 0 <= counter <= 0xFF:
        raise ValueError(f"counter {counter} is not a uint8")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    crc = crc16(payload)
    return SYNC + bytes((counter, message_type, len(payload), crc >> 8, crc & 0xFF)) + payload
