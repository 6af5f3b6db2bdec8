"""CRC-16/CCITT-FALSE, the checksum of a serial frame's payload (docs/protocol.md section 1.1)."""

from __future__ import annotations

import binascii
from typing import Final

__all__ = ["CRC16_CHECK", "crc16"]

CRC16_CHECK: Final = 0x29B1
"""The CRC of ASCII `123456789`: the algorithm's published check value."""


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0)."""
    return binascii.crc_hqx(data, 0xFFFF)
