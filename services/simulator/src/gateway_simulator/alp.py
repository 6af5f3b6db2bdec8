"""ALP encoding of what a DASH7 sensor sends: ReturnFileData + D7 interface status.

The inverse of the decoder's parsing (docs/protocol.md sections 2 and 3). The simulator uses it
to play the modem, and the tests use it to build frames the vectors do not cover.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from gateway_common.dash7 import (
    ADDRESS_SIZE,
    BUTTON_CONFIG_FILE_ID,
    BUTTON_FILE_ID,
    D7ASP_INTERFACE_ID,
    ENERGY_CONFIG_FILE_ID,
    ENERGY_FILE_ID,
    OP_RETURN_FILE_DATA,
    OP_STATUS,
    STATUS_EXT_INTERFACE,
    AddressType,
)

__all__ = [
    "BUTTON_CONFIG_FILE_ID",
    "BUTTON_FILE_ID",
    "ENERGY_CONFIG_FILE_ID",
    "ENERGY_FILE_ID",
    "AddressType",
    "Energy",
    "InterfaceStatus",
    "button_config_file",
    "button_file",
    "energy_config_file",
    "energy_file",
    "length_operand",
    "return_file_data",
    "unsolicited_message",
]

STATUS_INTERFACE: Final = (STATUS_EXT_INTERFACE << 6) | OP_STATUS
"""0x62: the Status action carrying an interface status."""


def length_operand(value: int) -> bytes:
    """A length operand: top two bits give the count of extra bytes, value big-endian."""
    if value < 0 or value >= 1 << 30:
        raise ValueError(f"length {value} cannot be encoded")
    for extra in range(4):
        if value < 1 << (6 + 8 * extra):
            raw = value.to_bytes(extra + 1, "big")
            return bytes((raw[0] | (extra << 6),)) + raw[1:]
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class InterfaceStatus:
    """The D7 interface status of the sender, as the modem appends it."""

    address: bytes
    address_type: AddressType = AddressType.UID
    rx_level: int = 57
    link_budget: int = 71
    channel_header: int = 0x32
    channel_index: int = 0
    target_rx_level: int = 80
    flags: int = 0
    fifo_token: int = 0x49
    sequence: int = 0
    response_timeout: int = 0xA9
    nls_method: int = 0
    access_class: int = 0x01

    def encode(self) -> bytes:
        if len(self.address) != ADDRESS_SIZE[self.address_type]:
            raise ValueError(
                f"a {self.address_type.name} address has {ADDRESS_SIZE[self.address_type]} bytes"
            )
        body = (
            struct.pack(
                ">BHBBBBBBBBB",
                self.channel_header,
                self.channel_index,
                self.rx_level,
                self.link_budget,
                self.target_rx_level,
                self.flags,
                self.fifo_token,
                self.sequence,
                self.response_timeout,
                (self.address_type << 4) | (self.nls_method & 0x0F),
                self.access_class,
            )
            + self.address
        )
        return bytes((STATUS_INTERFACE, D7ASP_INTERFACE_ID, len(body))) + body


@dataclass(frozen=True, slots=True)
class Energy:
    apparent_energy_vah: tuple[int, int, int]
    active_energy_wh: tuple[int, int, int]
    current_ma: tuple[int, int, int]
    voltage_v: tuple[int, int, int]
    measurement_valid: bool = True


def energy_file(energy: Energy) -> bytes:
    """The 67-byte EnergyFile (little-endian)."""
    return struct.pack(
        "<3q3q3i3hB",
        *energy.apparent_energy_vah,
        *energy.active_energy_wh,
        *energy.current_ma,
        *energy.voltage_v,
        int(energy.measurement_valid),
    )


def energy_config_file(interval_s: int = 600, enabled: bool = True) -> bytes:
    return struct.pack("<IB", interval_s, int(enabled))


def button_file(button_id: int, mask: int, buttons_state: int) -> bytes:
    return bytes((button_id, mask, buttons_state))


def button_config_file(
    transmit_mask_0: int, transmit_mask_1: int, button_control_menu: int, enabled: bool
) -> bytes:
    return bytes((transmit_mask_0, transmit_mask_1, button_control_menu, int(enabled)))


def return_file_data(file_id: int, data: bytes, offset: int = 0) -> bytes:
    return (
        bytes((OP_RETURN_FILE_DATA, file_id))
        + length_operand(offset)
        + length_operand(len(data))
        + data
    )


def unsolicited_message(file_id: int, data: bytes, status: InterfaceStatus) -> bytes:
    """The ALP command a sensor's file arrives as: ReturnFileData, then the sender's status."""
    return return_file_data(file_id, data) + status.encode()
