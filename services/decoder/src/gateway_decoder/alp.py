"""Fast parser of the ALP command a sensor's file arrives as (docs/protocol.md section 2).

The command is exactly one ReturnFileData action followed by one Status action carrying the
sender's D7 interface status. The parser reads only the bytes it was given, takes the status LEN
byte as authoritative, reads rx_level unsigned, and raises only `AlpError` (a ValueError) with a
short, stable `reason` and the numbers in its message. Any other action shape is reported, never
guessed: a sensor message that is not this shape carries no file we could attribute anyway.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from gateway_common.dash7 import (
    ADDRESS_SIZE,
    D7ASP_INTERFACE_ID,
    OP_RETURN_FILE_DATA,
    OP_STATUS,
    STATUS_EXT_INTERFACE,
    STATUS_FIXED_SIZE,
    AddressType,
)

__all__ = [
    "AddressType",
    "AlpError",
    "D7Status",
    "UnsolicitedMessage",
    "parse_length_operand",
    "parse_unsolicited",
]


_OPCODE_NAMES: Final = {
    1: "ReadFileData",
    4: "WriteFileData",
    9: "BreakQuery",
    17: "CreateNewFile",
    32: "ReturnFileData",
    33: "ReturnFileHeader",
    34: "Status",
    35: "TagResponse",
    50: "Forward",
    51: "IndirectForward",
    52: "TagRequest",
}


class AlpError(ValueError):
    """Bytes that are not the expected ALP command.

    `reason` is short and stable (fit for a dead-letter reason or a metric label); the message
    adds the offsets and sizes involved.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason


_ADDRESS_TYPES: Final = tuple(AddressType)


class D7Status(NamedTuple):
    """The D7 interface status of the sender (protocol.md section 2.3)."""

    channel_header: int
    channel_index: int
    rx_level: int
    """Received power as unsigned -dBm (57 means -57 dBm); 0-255."""
    link_budget: int
    target_rx_level: int
    flags: int
    """b7 NLS, b6 missed, b5 retry, b4 unicast."""
    fifo_token: int
    sequence: int
    response_timeout: int
    address_type: AddressType
    nls_method: int
    access_class: int
    address: bytes
    """The sender's address, big-endian as sent (empty for NOID)."""

    @property
    def channel_band(self) -> int:
        return (self.channel_header >> 4) & 0x07

    @property
    def channel_class(self) -> int:
        return (self.channel_header >> 2) & 0x03

    @property
    def channel_coding(self) -> int:
        return self.channel_header & 0x03

    @property
    def nls(self) -> bool:
        return bool(self.flags & 0x80)

    @property
    def missed(self) -> bool:
        return bool(self.flags & 0x40)

    @property
    def retry(self) -> bool:
        return bool(self.flags & 0x20)

    @property
    def unicast(self) -> bool:
        return bool(self.flags & 0x10)


class UnsolicitedMessage(NamedTuple):
    """ReturnFileData + D7 interface status; `status` is None when the modem sent LEN 0."""

    file_id: int
    offset: int
    data: bytes
    status: D7Status | None


def _opcode_name(opcode: int) -> str:
    name = _OPCODE_NAMES.get(opcode)
    return f"{opcode} ({name})" if name else str(opcode)


def parse_length_operand(payload: bytes, pos: int, what: str = "length") -> tuple[int, int]:
    """Parse a length operand at `pos`; returns (value, position after it).

    Bits 7-6 of the first byte give the number of extra bytes (0-3); the value is the low six
    bits followed by those bytes, big-endian.
    """
    size = len(payload)
    if pos >= size:
        raise AlpError(f"truncated {what}", f"operand at byte {pos}, command has {size} bytes")
    first = payload[pos]
    end = pos + 1 + (first >> 6)
    if end > size:
        raise AlpError(
            f"truncated {what}",
            f"operand at byte {pos} needs {end - pos} bytes, command has {size} bytes",
        )
    value = first & 0x3F
    for index in range(pos + 1, end):
        value = (value << 8) | payload[index]
    return value, end


def parse_unsolicited(payload: bytes) -> UnsolicitedMessage:
    """Parse one unsolicited sensor message; never reads past `payload`, never ignores a byte."""
    size = len(payload)
    if size == 0:
        raise AlpError("empty command")
    opcode = payload[0] & 0x3F
    if opcode != OP_RETURN_FILE_DATA:
        raise AlpError(f"unsupported ALP action opcode {opcode}", f"{_opcode_name(opcode)} first")
    if size < 2:
        raise AlpError("truncated file id", "command has 1 byte")
    file_id = payload[1]
    offset, pos = parse_length_operand(payload, 2, "file offset")
    length, pos = parse_length_operand(payload, pos, "file length")
    end = pos + length
    if end > size:
        raise AlpError(
            "truncated file data",
            f"{length} bytes declared at byte {pos}, {size - pos} available",
        )
    data = payload[pos:end]
    status = _parse_status(payload, end, size)
    return UnsolicitedMessage(file_id, offset, data, status)


def _parse_status(payload: bytes, pos: int, size: int) -> D7Status | None:
    if pos >= size:
        raise AlpError("missing interface status", f"command ends after the file data at {pos}")
    header = payload[pos]
    opcode = header & 0x3F
    if opcode != OP_STATUS:
        raise AlpError(
            f"unsupported ALP action opcode {opcode}",
            f"{_opcode_name(opcode)} at byte {pos} after ReturnFileData",
        )
    extension = header >> 6
    if extension != STATUS_EXT_INTERFACE:
        raise AlpError(
            f"unsupported status operand extension {extension}",
            f"status header 0x{header:02X} at byte {pos}",
        )
    if pos + 3 > size:
        raise AlpError("truncated interface status", f"header at byte {pos}, {size} bytes")
    interface_id = payload[pos + 1]
    if interface_id != D7ASP_INTERFACE_ID:
        raise AlpError(f"unsupported interface 0x{interface_id:02X}", f"status at byte {pos}")
    status_len = payload[pos + 2]
    body = pos + 3
    end = body + status_len
    if end > size:
        raise AlpError(
            "truncated interface status",
            f"LEN {status_len} at byte {pos + 2}, {size - body} bytes follow",
        )
    if end < size:
        raise AlpError(
            "trailing bytes after interface status",
            f"{size - end} bytes after byte {end}",
        )
    if status_len == 0:
        return None
    return _parse_d7_status(payload, body, status_len)


def _parse_d7_status(payload: bytes, body: int, status_len: int) -> D7Status:
    """The D7 status body of `status_len` bytes at `body` (already known to be in range)."""
    end = body + status_len
    if status_len < STATUS_FIXED_SIZE:
        raise AlpError(
            "interface status too short",
            f"LEN {status_len}, the fixed part alone has {STATUS_FIXED_SIZE} bytes",
        )
    control = payload[body + 10]
    address_type = _ADDRESS_TYPES[(control >> 4) & 0x03]
    address_start = body + STATUS_FIXED_SIZE
    address_end = address_start + ADDRESS_SIZE[address_type]
    if address_end != end:
        raise AlpError(
            "interface status length mismatch",
            f"LEN {status_len} but a {address_type.name} status has {address_end - body} bytes",
        )
    return D7Status(
        payload[body],
        (payload[body + 1] << 8) | payload[body + 2],
        payload[body + 3],
        payload[body + 4],
        payload[body + 5],
        payload[body + 6],
        payload[body + 7],
        payload[body + 8],
        payload[body + 9],
        address_type,
        control & 0x0F,
        payload[body + 11],
        payload[address_start:address_end],
    )
