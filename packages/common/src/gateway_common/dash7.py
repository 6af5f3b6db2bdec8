"""DASH7 / ALP constants the sensors and the modem use (docs/protocol.md sections 2 and 3).

One definition for the decoder, which parses them, and the simulator, which writes them.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "ADDRESS_SIZE",
    "BUTTON_CONFIG_FILE_ID",
    "BUTTON_FILE_ID",
    "D7ASP_INTERFACE_ID",
    "ENERGY_CONFIG_FILE_ID",
    "ENERGY_FILE_ID",
    "OP_RETURN_FILE_DATA",
    "OP_STATUS",
    "STATUS_EXT_INTERFACE",
    "STATUS_FIXED_SIZE",
    "AddressType",
]

# Application files of the sensor firmware.
ENERGY_FILE_ID: Final = 52
ENERGY_CONFIG_FILE_ID: Final = 62
BUTTON_FILE_ID: Final = 51
BUTTON_CONFIG_FILE_ID: Final = 61

# ALP actions.
OP_RETURN_FILE_DATA: Final = 32
OP_STATUS: Final = 34
STATUS_EXT_INTERFACE: Final = 1
"""Status operand extension 01: an interface status follows."""
D7ASP_INTERFACE_ID: Final = 0xD7
STATUS_FIXED_SIZE: Final = 12
"""Bytes of the D7 interface status before the sender's address."""


class AddressType(enum.IntEnum):
    """Addressee id type (addressee control bits 5-4)."""

    NBID = 0
    NOID = 1
    UID = 2
    VID = 3


ADDRESS_SIZE: Final = (1, 0, 8, 2)
"""Address size in bytes, indexed by AddressType."""
