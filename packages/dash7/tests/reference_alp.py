"""The reference ALP library: pyd7a (`d7a` 0.1.1). The only module that imports d7a.

A test oracle, not installed code (d7a is a dev dependency): it decodes ~100-150 frames/s (schema
validation), so it is never in the decoder's hot path; the differential tests compare
`gateway_dash7.alp` against it, and the bench measures it. Its known defects
(protocol.md section 2.3) are contained here: its stdout chatter is captured, and the exceptions
it raises on bad input are turned into `ReferenceDecodeError`. Its result is expressed in the fast
parser's types so the two can be compared field by field; where d7a loses information (the low
four status flag bits, which it skips as padding) the value is rebuilt from what it kept.

For the downlink it builds the host's request the way pyd7a's users do
(`Command.create_with_write_file_action` with a D7ASP interface configuration, then the tag id),
and parses the modem's answers (TagResponse, status, ReturnFileData).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from bitstring import ConstBitStream
from d7a.alp.command import Command
from d7a.alp.interface import InterfaceType
from d7a.alp.operations.responses import ReturnFileData
from d7a.alp.parser import Parser
from d7a.d7anp.addressee import Addressee, IdType, NlsMethod
from d7a.parse_error import ParseError
from d7a.sp.configuration import Configuration
from d7a.sp.qos import QoS, ResponseMode
from d7a.types.ct import CT

from gateway_dash7 import (
    ADDRESS_SIZE,
    AddressType,
    D7Status,
    FileData,
    ModemAnswer,
    UnsolicitedMessage,
    WriteRequest,
)

__all__ = [
    "ReferenceDecodeError",
    "build_reference_write",
    "parse_reference",
    "parse_reference_answer",
    "reference_compress_time",
]

#: What d7a raises on bad input: its own ParseError, ValueError from schema validation and
#: enums (bitstring's InterpretError is one), LookupError from reading past the end (bitstring's
#: ReadError is an IndexError) or from its opcode tables, TypeError and AttributeError from
#: half-parsed operands (a host interface status becomes an action without operation),
#: AssertionError from its `assert(False)` branches.
_D7A_ERRORS: tuple[type[Exception], ...] = (
    ParseError,
    ValueError,
    LookupError,
    TypeError,
    AttributeError,
    AssertionError,
)


class ReferenceDecodeError(ValueError):
    """d7a could not parse the bytes, or parsed them into another shape."""


def parse_reference(alp: bytes) -> UnsolicitedMessage:
    """Parse `alp` with d7a into the fast parser's types; raises ReferenceDecodeError."""
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            command = Parser().parse(ConstBitStream(bytes=alp), len(alp))
    except _D7A_ERRORS as exc:
        raise ReferenceDecodeError(f"d7a: {type(exc).__name__}: {exc}") from exc
    actions = [a for a in command.actions if a is not None]
    if len(actions) != 1 or not isinstance(actions[0].operation, ReturnFileData):
        raise ReferenceDecodeError(f"d7a: expected one ReturnFileData, got {len(actions)} actions")
    operand = actions[0].operation.operand
    status_action = command.interface_status
    if status_action is None:
        raise ReferenceDecodeError("d7a: no interface status")
    status = status_action.operation.operand.interface_status
    return UnsolicitedMessage(
        file_id=int(operand.offset.id),
        offset=int(operand.offset.offset.value),
        data=bytes(operand.data),
        status=None if status is None else _status(status),
    )


def _status(status: Any) -> D7Status:
    header = status.channel_id.channel_header
    addressee = status.addressee
    address_type = AddressType(addressee.id_type.value)
    if addressee.id_type == IdType.NBID:
        address_value = addressee.id.compressed_value()
    elif addressee.id is None:
        address_value = 0
    else:
        address_value = int(addressee.id)
    flags = (
        (0x80 if status.nls else 0)
        | (0x40 if status.missed else 0)
        | (0x20 if status.retry else 0)
        | (0x10 if status.unicast else 0)
    )
    return D7Status(
        channel_header=(header.channel_band.value << 4)
        | (header.channel_class.value << 2)
        | header.channel_coding.value,
        channel_index=int(status.channel_id.channel_index),
        rx_level=int(status.rx_level),
        link_budget=int(status.link_budget),
        target_rx_level=int(status.target_rx_level),
        flags=flags,
        fifo_token=int(status.fifo_token),
        sequence=int(status.seq_nr),
        response_timeout=status.response_to.compressed_value(),
        address_type=address_type,
        nls_method=int(addressee.nls_method.value),
        access_class=int(addressee.access_class),
        address=address_value.to_bytes(ADDRESS_SIZE[address_type], "big"),
    )


def reference_compress_time(seconds: int) -> int:
    """d7a's compressed time of `seconds`, rounded up (`CT.compress`)."""
    return int(CT.compress(seconds).compressed_value())


def build_reference_write(request: WriteRequest) -> bytes:
    """The bytes d7a builds for `request`: `Command.create_with_write_file_action` over D7ASP
    with the request's interface configuration, then `cmd.tag_id = tag`."""
    config = request.configuration
    addressee = config.addressee
    address_type = IdType(int(addressee.address_type))
    address = int.from_bytes(addressee.address, "big") if addressee.address else None
    dormant = CT(exp=config.dormant_timeout >> 5, mant=config.dormant_timeout & 0x1F)
    cmd = Command.create_with_write_file_action(
        request.file_id,
        list(request.data),
        request.offset,
        interface_type=InterfaceType.D7ASP,
        interface_configuration=Configuration(
            qos=QoS(resp_mod=ResponseMode(int(config.response_mode))),
            dorm_to=dormant,
            addressee=Addressee(
                access_class=addressee.access_class,
                id_type=address_type,
                id=address,
                nls_method=NlsMethod(int(addressee.nls_method)),
            ),
        ),
    )
    cmd.tag_id = request.tag_id
    return bytes(bytearray(cmd))


def parse_reference_answer(alp: bytes) -> ModemAnswer:
    """Parse one modem answer with d7a into the codec's type; raises ReferenceDecodeError."""
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            command = Parser().parse(ConstBitStream(bytes=alp), len(alp))
    except _D7A_ERRORS as exc:
        raise ReferenceDecodeError(f"d7a: {type(exc).__name__}: {exc}") from exc
    actions = [a for a in command.actions if a is not None]
    if len(actions) > 1 or (actions and not isinstance(actions[0].operation, ReturnFileData)):
        raise ReferenceDecodeError(f"d7a: expected at most one ReturnFileData, got {actions}")
    file = None
    if actions:
        operand = actions[0].operation.operand
        file = FileData(
            int(operand.offset.id), int(operand.offset.offset.value), bytes(operand.data)
        )
    status = None
    if command.interface_status is not None:
        raw_status = command.interface_status.operation.operand.interface_status
        status = None if raw_status is None else _status(raw_status)
    return ModemAnswer(
        tag_id=int(command.tag_id),
        end_of_procedure=bool(command.execution_completed),
        error=bool(getattr(command, "completed_with_error", False)),
        status=status,
        file=file,
    )
