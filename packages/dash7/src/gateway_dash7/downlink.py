"""The downlink (docs/protocol.md section 5): what the host writes to the modem, and its answers.

**The request.** One ALP command: `TagRequest` (respond when completed, a tag id), `Forward`
over D7ASP with its interface configuration (d7asp.py), `WriteFileData` (file, offset, bytes):

    B4 2A | 32 D7 02 73 21 01 32 36 36 30 00 39 00 4C | 04 3E 00 05 58 02 00 00 01

`WriteRequest` builds it, and parses it back (the simulator reads what the host sent).

**The answers.** The modem answers a tagged request over the serial link with ALP commands of
its own: each remote response as the responder's D7 interface status, a `TagResponse` (tag id,
end-of-procedure 0) and the response's payload (ReturnFileData), and the completion as a status
(LEN 0 at the end of a host-initiated session) and a `TagResponse` with end-of-procedure set
(`A3 tt`, or `E3 tt` with the error flag). The actions may come in either order. `parse_answer`
reads one; `parse_received` tells an answer from a sensor's unsolicited message (alp.py) by the
TagResponse it carries.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from gateway_dash7.alp import (
    D7ASP_INTERFACE_ID,
    OP_RETURN_FILE_DATA,
    OP_STATUS,
    STATUS_EXT_INTERFACE,
    AlpError,
    D7Status,
    UnsolicitedMessage,
    encode_length_operand,
    encode_return_file_data,
    encode_status_action,
    parse_length_operand,
    parse_unsolicited,
)
from gateway_dash7.d7asp import InterfaceConfiguration

__all__ = [
    "OP_FORWARD",
    "OP_TAG_REQUEST",
    "OP_TAG_RESPONSE",
    "OP_WRITE_FILE_DATA",
    "FileData",
    "ModemAnswer",
    "WriteRequest",
    "parse_answer",
    "parse_received",
]

OP_WRITE_FILE_DATA: Final = 4
OP_TAG_RESPONSE: Final = 35
OP_FORWARD: Final = 50
OP_TAG_REQUEST: Final = 52
_EOP: Final = 0x80
"""TagResponse bit 7: end of procedure (TagRequest bit 7: respond when completed)."""
_ERROR: Final = 0x40
"""TagResponse bit 6: the procedure (or this response) ended with an error."""
_RESPONSE_REQUESTED: Final = 0x40
"""Regular action bit 6: the action asks for a response."""


class FileData(NamedTuple):
    """The file bytes an answer carries (a ReturnFileData action)."""

    file_id: int
    offset: int
    data: bytes


class WriteRequest(NamedTuple):
    """A tagged WriteFileData forwarded over D7ASP: the one request the host sends."""

    tag_id: int
    configuration: InterfaceConfiguration
    file_id: int
    data: bytes
    offset: int = 0
    respond_when_completed: bool = True

    def encode(self) -> bytes:
        """TagRequest, Forward (D7ASP + configuration), WriteFileData (ValueError if out of
        range)."""
        if not 0 <= self.tag_id <= 0xFF or not 0 <= self.file_id <= 0xFF:
            raise ValueError(f"tag id {self.tag_id} or file id {self.file_id} is not a byte")
        tag_request = bytes(
            ((_EOP if self.respond_when_completed else 0) | OP_TAG_REQUEST, self.tag_id)
        )
        forward = bytes((OP_FORWARD, D7ASP_INTERFACE_ID)) + self.configuration.encode()
        write = (
            bytes((OP_WRITE_FILE_DATA, self.file_id))
            + encode_length_operand(self.offset)
            + encode_length_operand(len(self.data))
            + self.data
        )
        return tag_request + forward + write

    @classmethod
    def parse(cls, payload: bytes) -> WriteRequest:
        """The request whose bytes are exactly `payload`; raises AlpError."""
        size = len(payload)
        if size < 2 or payload[0] & 0x3F != OP_TAG_REQUEST or payload[0] & 0x40:
            raise AlpError("not a tagged request", f"starts {payload[:2].hex()}")
        respond, tag_id = bool(payload[0] & _EOP), payload[1]
        if size < 4 or payload[2] != OP_FORWARD or payload[3] != D7ASP_INTERFACE_ID:
            raise AlpError("not forwarded over D7ASP", f"bytes 2-3: {payload[2:4].hex()}")
        configuration, pos = InterfaceConfiguration.parse(payload, 4)
        if pos >= size or payload[pos] & 0x3F != OP_WRITE_FILE_DATA or payload[pos] & 0x80:
            raise AlpError("not a WriteFileData request", f"action at byte {pos}")
        if payload[pos] & _RESPONSE_REQUESTED:
            raise AlpError("unsupported response flag", f"WriteFileData at byte {pos}")
        if pos + 1 >= size:
            raise AlpError("truncated file id", f"at byte {pos + 1}")
        file_id = payload[pos + 1]
        offset, pos = parse_length_operand(payload, pos + 2, "file offset")
        length, pos = parse_length_operand(payload, pos, "file length")
        if pos + length != size:
            raise AlpError(
                "file data does not end the request",
                f"{length} bytes declared at byte {pos}, {size - pos} follow",
            )
        return cls(tag_id, configuration, file_id, payload[pos:], offset, respond)


class ModemAnswer(NamedTuple):
    """One answer of the modem to a tagged request: a response, or the completion."""

    tag_id: int
    end_of_procedure: bool
    """The completion of the request (no more answers for this tag)."""
    error: bool
    status: D7Status | None
    """The responder's D7 interface status; None for a status of LEN 0 (or none at all)."""
    file: FileData | None = None
    """The payload of a response (the responder's ReturnFileData), if any."""

    def encode(self, *, status_first: bool = True) -> bytes:
        """Status, TagResponse, then the payload; `status_first=False` puts the TagResponse
        first."""
        if not 0 <= self.tag_id <= 0xFF:
            raise ValueError(f"tag id {self.tag_id} is not a byte")
        flags = (_EOP if self.end_of_procedure else 0) | (_ERROR if self.error else 0)
        tag_response = bytes((flags | OP_TAG_RESPONSE, self.tag_id))
        status = encode_status_action(self.status)
        payload = b""
        if self.file is not None:
            payload = encode_return_file_data(self.file.file_id, self.file.data, self.file.offset)
        head = status + tag_response if status_first else tag_response + status
        return head + payload


class _Actions(NamedTuple):
    tags: list[tuple[int, int]]
    """(header byte, tag id) of each TagResponse."""
    statuses: list[D7Status | None]
    files: list[FileData]


def _split(payload: bytes) -> tuple[_Actions, AlpError | None]:
    """The actions an answer may hold, in order, up to the first that cannot be read."""
    actions = _Actions([], [], [])
    pos = 0
    try:
        while pos < len(payload):
            pos = _action(payload, pos, actions)
    except AlpError as exc:
        return actions, exc
    return actions, None


def _action(payload: bytes, pos: int, actions: _Actions) -> int:
    """Read the action at `pos` into `actions`; the position after it."""
    header = payload[pos]
    opcode = header & 0x3F
    if opcode == OP_TAG_RESPONSE:
        if pos + 2 > len(payload):
            raise AlpError("truncated tag response", f"at byte {pos}")
        actions.tags.append((header, payload[pos + 1]))
        return pos + 2
    if opcode == OP_STATUS:
        status, end = _status(payload, pos)
        actions.statuses.append(status)
        return end
    if opcode == OP_RETURN_FILE_DATA:
        file, end = _file(payload, pos)
        actions.files.append(file)
        return end
    raise AlpError(f"unsupported ALP action opcode {opcode}", f"at byte {pos}")


def _status(payload: bytes, pos: int) -> tuple[D7Status | None, int]:
    header = payload[pos]
    if header >> 6 != STATUS_EXT_INTERFACE:
        raise AlpError(
            f"unsupported status operand extension {header >> 6}",
            f"status header 0x{header:02X} at byte {pos}",
        )
    if pos + 3 > len(payload):
        raise AlpError("truncated interface status", f"header at byte {pos}")
    if payload[pos + 1] != D7ASP_INTERFACE_ID:
        raise AlpError(f"unsupported interface 0x{payload[pos + 1]:02X}", f"status at {pos}")
    length = payload[pos + 2]
    end = pos + 3 + length
    if end > len(payload):
        raise AlpError("truncated interface status", f"LEN {length} at byte {pos + 2}")
    return (D7Status.decode(payload[pos + 3 : end]) if length else None), end


def _file(payload: bytes, pos: int) -> tuple[FileData, int]:
    if pos + 2 > len(payload):
        raise AlpError("truncated file id", f"at byte {pos + 1}")
    file_id = payload[pos + 1]
    offset, data_pos = parse_length_operand(payload, pos + 2, "file offset")
    length, data_pos = parse_length_operand(payload, data_pos, "file length")
    end = data_pos + length
    if end > len(payload):
        raise AlpError("truncated file data", f"{length} bytes declared at byte {data_pos}")
    return FileData(file_id, offset, payload[data_pos:end]), end


def _answer(actions: _Actions) -> ModemAnswer:
    if len(actions.tags) != 1:
        raise AlpError("not one tag response", f"{len(actions.tags)} in the command")
    if len(actions.statuses) > 1 or len(actions.files) > 1:
        raise AlpError(
            "unsupported answer shape",
            f"{len(actions.statuses)} statuses, {len(actions.files)} files",
        )
    (header, tag_id) = actions.tags[0]
    return ModemAnswer(
        tag_id=tag_id,
        end_of_procedure=bool(header & _EOP),
        error=bool(header & _ERROR),
        status=actions.statuses[0] if actions.statuses else None,
        file=actions.files[0] if actions.files else None,
    )


def parse_answer(payload: bytes) -> ModemAnswer:
    """One answer of the modem: exactly one TagResponse, at most one D7 interface status and
    one ReturnFileData, in any order, and nothing else; raises AlpError."""
    actions, error = _split(payload)
    if error is not None:
        raise error
    return _answer(actions)


def parse_received(payload: bytes) -> UnsolicitedMessage | ModemAnswer:
    """What an ALP_DATA frame from the modem holds: an answer to a tagged request when it
    carries a TagResponse, otherwise a sensor's unsolicited message; raises AlpError."""
    try:
        return parse_unsolicited(payload)  # the usual case, parsed once
    except AlpError:
        actions, error = _split(payload)
        if not actions.tags:
            raise
    if error is not None:
        raise error
    return _answer(actions)
