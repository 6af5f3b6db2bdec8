from __future__ import annotations

import pytest

from gateway_simulator.alp import (
    AddressType,
    Energy,
    InterfaceStatus,
    energy_file,
    length_operand,
    unsolicited_message,
)

UID = bytes.fromhex("323636300039004C")


def test_length_operand_examples() -> None:
    assert length_operand(67) == bytes.fromhex("4043")
    assert length_operand(3) == bytes.fromhex("03")
    assert length_operand(0) == b"\x00"
    assert length_operand(0x3FFF) == bytes.fromhex("7FFF")
    assert length_operand(0x4000) == bytes.fromhex("804000")
    with pytest.raises(ValueError, match="cannot be encoded"):
        length_operand(-1)


def test_energy_uid_vector_is_reproduced(vectors) -> None:
    case = next(c for c in vectors if c["name"] == "energy_uid")
    status = InterfaceStatus(
        address=UID,
        rx_level=0x39,
        link_budget=71,
        fifo_token=0x49,
        sequence=0,
        response_timeout=0xA9,
        access_class=0x01,
        channel_header=0x32,
        channel_index=0,
    )
    energy = Energy(
        (1234567, 2345678, 3456789), (1000000, 2000000, 3000000), (12345, -200, 0), (230, 231, 229)
    )
    assert unsolicited_message(52, energy_file(energy), status) == bytes.fromhex(case["alp_hex"])


def test_address_size_is_checked() -> None:
    with pytest.raises(ValueError, match="VID"):
        InterfaceStatus(address=b"\x01", address_type=AddressType.VID).encode()
