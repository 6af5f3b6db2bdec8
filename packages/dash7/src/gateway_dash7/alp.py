"""The ALP command a sensor's file arrives as (docs/protocol.md section 2): parsed and built.

The command is exactly one ReturnFileData action followed by one Status action carrying the
sender's D7 interface status. The parser reads only the bytes it was given, takes the status LEN
byte as authoritative, reads rx_level unsigned, and raises only `AlpError` (a ValueError) with a
short, stable `reason` and the numbers in its message. Any other action shape is reported, never
guessed: a sensor message that is not this shape carries no file we could attribute anyway.

The builders write what a sensor and its modem send, and `D7Status` is one type for the status
both ways: whatever a builder writes, the parser reads back as the same values.
"""

from __future__ import annotations

import enum
import struct
from typing import Final, NamedTuple

__all__ = [
    "ADDRESS_SIZE",
    "D7ASP_INTERFACE_ID",
    "OP_RETURN_FILE_DATA",
    "OP_STATUS",
    "STATUS_EXT_INTERFACE",
    "STATUS_FIXED_SIZE",
    "STATUS_INTERFACE_HEADER",
    "AddressType",
    "AlpError",
    "D7Status",
    "UnsolicitedMessage",
    "device_id",
    "encode_length_operand",
    "encode_return_file_data",
    "encode_status_action",
    "encode_unsolicited",
    "parse_length_operand",
    "parse_unsolicited",
]

# ALP actions.
OP_RETURN_FILE_DATA: Final = 32
OP_STATUS: Final = 34
STATUS_EXT_INTERFACE: Final = 1
"""Status operand extension 01: an interface status follows."""
STATUS_INTERFACE_HEADER: Final = (STATUS_EXT_INTERFACE << 6) | OP_STATUS
"""0x62: the Status action carrying an interface status."""
D7ASP_INTERFACE_ID: Final = 0xD7

_STATUS_FIXED: Final = struct.Struct(">BHBBBBBBBBB")
"""The D7 interface status before the sender's address, big-endian: channel header, channel
index, rx_level, link_budget, target_rx_level, flags, fifo token, sequence, response timeout,
addressee control, access class."""
STATUS_FIXED_SIZE: Final = _STATUS_FIXED.size
"""Bytes of the D7 interface status before the sender's address (12)."""

_MAX_LENGTH_OPERAND: Final = (1 << 30) - 1

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


class AddressType(enum.IntEnum):
    """Addressee id type (addressee control bits 5-4)."""

    NBID = 0
    NOID = 1
    UID = 2
    VID = 3


ADDRESS_SIZE: Final = (1, 0, 8, 2)
"""Address size in bytes, indexed by AddressType."""
_ADDRESS_TYPES: Final = tuple(AddressType)


def device_id(address: bytes) -> str:
    """The SCorp-io DEVICE_ID of a sender (protocol.md section 4): the address as upper-case
    hex, no `0x`, no zero padding. Devices already provisioned are keyed by this exact string."""
    return format(int.from_bytes(address, "big"), "X")


class AlpError(ValueError):
    """Bytes that are not the expected ALP command.

    `reason` is short and stable (fit for a dead-letter reason or a metric label); the message
    adds the offsets and sizes involved.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason


class D7Status(NamedTuple):
    """The D7 interface status of the sender (protocol.md section 2.3), both ways.

    `decode` reads the status bytes (the LEN bytes after `62 D7 LEN`) and `encode` writes them:
    `D7Status.decode(status.encode()) == status`. `address` comes first so that a status can be
    written with the sender alone; the other defaults are what this project's sensors send (the
    parser sets every field from the bytes).
    """

    address: bytes
    """The sender's address, big-endian as sent (empty for NOID)."""
    address_type: AddressType = AddressType.UID
    channel_header: int = 0x32
    channel_index: int = 0
    rx_level: int = 57
    """Received power as unsigned -dBm (57 means -57 dBm); 0-255."""
    link_budget: int = 71
    target_rx_level: int = 80
    flags: int = 0
    """b7 NLS, b6 missed, b5 retry, b4 unicast."""
    fifo_token: int = 0x49
    sequence: int = 0
    response_timeout: int = 0xA9
    nls_method: int = 0
    """Addressee control bits 3-0."""
    access_class: int = 0x01

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

    @classmethod
    def decode(cls, data: bytes) -> D7Status:
        """The status whose bytes are exactly `data`; raises AlpError."""
        return _parse_d7_status(data, 0, len(data))

    def encode(self) -> bytes:
        """The status bytes: the fixed part, then the address (ValueError if out of range)."""
        address_type = checked_addressee(self.address_type, self.address, self.nls_method)
        try:
            fixed = _STATUS_FIXED.pack(
                self.channel_header,
                self.channel_index,
                self.rx_level,
                self.link_budget,
                self.target_rx_level,
                self.flags,
                self.fifo_token,
                self.sequence,
                self.response_timeout,
                (address_type << 4) | self.nls_method,
                self.access_class,
            )
        except struct.error as exc:
            raise ValueError(f"D7 status field out of range: {exc}") from exc
        return fixed + self.address


class UnsolicitedMessage(NamedTuple):
    """ReturnFileData + D7 interface status; `status` is None when the modem sent LEN 0."""

    file_id: int
    offset: int
    data: bytes
    status: D7Status | None


def checked_addressee(address_type: int, address: bytes, nls_method: int) -> AddressType:
    """The address type of an addressee (a status's sender, a request's target), once its
    address has that type's size and its NLS method fits the control byte's 4 bits."""
    checked = AddressType(address_type)
    if len(address) != ADDRESS_SIZE[checked]:
        raise ValueError(
            f"a {checked.name} address has {ADDRESS_SIZE[checked]} bytes, got {len(address)}"
        )
    if not 0 <= nls_method <= 0x0F:
        raise ValueError(f"NLS method {nls_method} does not fit in 4 bits")
    return checked


def _opcode_name(opcode: int) -> str:
    name = _OPCODE_NAMES.get(opcode)
    return f"{opcode} ({name})" if name else str(opcode)


# ------------------------------------------------------------------ building


def encode_length_operand(value: int) -> bytes:
    """A length operand: top two bits give the count of extra bytes, value big-endian."""
    if not 0 <= value <= _MAX_LENGTH_OPERAND:
        raise ValueError(f"length {value} cannot be encoded")
    extra = 0
    while value >> (6 + 8 * extra):
        extra += 1
    raw = value.to_bytes(extra + 1, "big")
    return bytes((raw[0] | (extra << 6),)) + raw[1:]


def encode_return_file_data(file_id: int, data: bytes, offset: int = 0) -> bytes:
    """`20 <file id> <offset> <length> <file bytes>`: the action a sensor's file arrives in."""
    return (
        bytes((OP_RETURN_FILE_DATA, file_id))
        + encode_length_operand(offset)
        + encode_length_operand(len(data))
        + data
    )


def encode_status_action(status: D7Status | None) -> bytes:
    """`62 D7 LEN <status>`: the Status action with the D7 interface status; None is LEN 0."""
    body = b"" if status is None else status.encode()
    return bytes((STATUS_INTERFACE_HEADER, D7ASP_INTERFACE_ID, len(body))) + body


def encode_unsolicited(
    file_id: int, data: bytes, status: D7Status | None, offset: int = 0
) -> bytes:
    """The ALP command a sensor's file arrives as: ReturnFileData, then the sender's status."""
    return encode_return_file_data(file_id, data, offset) + encode_status_action(status)


# ------------------------------------------------------------------ parsing


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
    (
        channel_header,
        channel_index,
        rx_level,
        link_budget,
        target_rx_level,
        flags,
        fifo_token,
        sequence,
        response_timeout,
        control,
        access_class,
    ) = _STATUS_FIXED.unpack_from(payload, body)
    address_type = _ADDRESS_TYPES[(control >> 4) & 0x03]
    address_start = body + STATUS_FIXED_SIZE
    address_end = address_start + ADDRESS_SIZE[address_type]
    if address_end != end:
        raise AlpError(
            "interface status length mismatch",
            f"LEN {status_len} but a {address_type.name} status has {address_end - body} bytes",
        )
    return D7Status(
        payload[address_start:address_end],
        address_type,
        channel_header,
        channel_index,
        rx_level,
        link_budget,
        target_rx_level,
        flags,
        fifo_token,
        sequence,
        response_timeout,
        control & 0x0F,
        access_class,
    )
