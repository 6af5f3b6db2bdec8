"""The reference ALP parser: pyd7a (`d7a` 0.1.1). The only module that imports d7a.

A test oracle, not installed code (d7a is a dev dependency): it decodes ~100-150 frames/s (schema
validation), so it is never in the decoder's hot path; the differential tests compare
`gateway_dash7.alp` against it, and the bench measures it. Its known defects
(protocol.md section 2.3) are contained here: its stdout chatter is captured, and the exceptions
it raises on bad input are turned into `ReferenceDecodeError`. Its result is expressed in the fast
parser's types so the two can be compared field by field; where d7a loses information (the low
four status flag bits, which it skips as padding) the value is rebuilt from what it kept.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from bitstring import ConstBitStream
from d7a.alp.operations.responses import ReturnFileData
from d7a.alp.parser import Parser
from d7a.d7anp.addressee import IdType
from d7a.parse_error import ParseError

from gateway_dash7 import ADDRESS_SIZE, AddressType, D7Status, UnsolicitedMessage

__all__ = ["ReferenceDecodeError", "parse_reference"]

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
