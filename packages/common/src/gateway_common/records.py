"""A frame entry in, a Record or the reason it cannot be one out. Pure: no I/O, no clock.

A frame may also be the modem's answer to a downlink command (protocol.md section 5.2: it
carries a TagResponse): it becomes a `CommandAnswer`, which the decoder routes to the command's
state, never to DDATA nor to the dead letters. The file a response carries (a device answering
a write of its EnergyConfigFile with the file) is a record of its own too.

The contract's Record is built here from the codec's values (gateway_dash7): the record kind and
field names of each application file are the services' contract, not the wire's. The decoder
runs this on every frame and `gatewayctl replay` on archived ones, so a replayed frame becomes
exactly the record the decoder made of it.

Reasons are short and stable (they label metrics and are what an operator greps for); the
specifics go into `Rejection.detail`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from gateway_common.entries import (
    Addressing,
    EntryError,
    FieldValue,
    FileKind,
    Record,
    decode_frame,
)
from gateway_common.streams import ENTRY_FIELD
from gateway_dash7 import (
    AddressType,
    AlpError,
    AppFile,
    ButtonConfigFile,
    ButtonFile,
    EnergyConfigFile,
    EnergyFile,
    FileError,
    ModemAnswer,
    UnknownFileError,
    UnsolicitedMessage,
    decode_file,
    device_id,
    parse_received,
)

__all__ = [
    "CommandAnswer",
    "DecodeFunction",
    "Outcome",
    "Rejection",
    "decode_alp",
    "decode_entry",
    "record_fields",
]


class Rejection(NamedTuple):
    """Why a frame cannot become a record; the decoder turns it into a DeadLetter."""

    reason: str
    raw: bytes
    """The ALP bytes (or the entry's bytes when it could not even be unpacked)."""
    received_at: float | None
    detail: dict[str, Any]


class CommandAnswer(NamedTuple):
    """The modem's answer to a downlink command (a TagResponse), received at `received_at`."""

    tag: int
    end_of_procedure: bool
    error: bool
    device_id: str | None
    """The responder (from the answer's D7 status); None for the completion's status LEN 0."""
    record: Record | None
    """The file the response carries, as a record (attributed to the responder)."""
    received_at: float
    raw: bytes
    counter: int | None = None
    """The modem's frame counter, from the frame entry (for the dead letter of an unknown tag,
    so that `gatewayctl dead requeue` rebuilds the whole entry)."""

    @property
    def reason(self) -> str:
        """What it is, where a reason is expected (`gatewayctl replay` skips it)."""
        return f"command answer (tag {self.tag}): not a reading"


Outcome = Record | Rejection | CommandAnswer
DecodeFunction = Callable[[str, Mapping[bytes, bytes]], Outcome]
"""(frame entry id, the entry's fields) -> Outcome; the decoder loop takes one of these."""


def record_fields(file: AppFile) -> tuple[FileKind, dict[str, FieldValue]]:
    """The record kind and the record fields (gateway_common.entries.Record) of one file."""
    match file:
        case EnergyFile():
            return "energy", {
                "apparent_energy_vah": list(file.apparent_energy_vah),
                "active_energy_wh": list(file.active_energy_wh),
                "current_ma": list(file.current_ma),
                "voltage_v": list(file.voltage_v),
                "measurement_valid": file.measurement_valid,
            }
        case ButtonFile():
            return "button", {
                "button_id": file.button_id,
                "mask": file.mask,
                "buttons_state": file.buttons_state,
            }
        case EnergyConfigFile():
            return "energy_config", {"interval_s": file.interval_s, "enabled": file.enabled}
        case ButtonConfigFile():
            return "button_config", {
                "transmit_mask_0": file.transmit_mask_0,
                "transmit_mask_1": file.transmit_mask_1,
                "button_control_menu": file.button_control_menu,
                "enabled": file.enabled,
            }


def decode_entry(entry_id: str, fields: Mapping[bytes, bytes]) -> Outcome:
    """Decode one `{p}:frames` entry (its stream fields) into a Record or a Rejection."""
    data = fields.get(ENTRY_FIELD)
    if data is None:
        present = sorted(key.decode("utf-8", "replace") for key in fields)
        return Rejection("undecodable entry: missing field d", b"", None, {"fields": present})
    try:
        frame = decode_frame(data)
    except EntryError as exc:
        message = str(exc)
        return Rejection(
            "undecodable entry: " + message.split(":", 1)[0], data, None, {"error": message}
        )
    outcome = decode_alp(entry_id, frame.alp, frame.received_at)
    if isinstance(outcome, Rejection):
        # The modem's frame counter, so that `gatewayctl dead requeue` rebuilds the whole entry.
        return outcome._replace(detail={**outcome.detail, "counter": frame.counter})
    if isinstance(outcome, CommandAnswer):
        return outcome._replace(counter=frame.counter)
    return outcome


def decode_alp(entry_id: str, alp: bytes, received_at: float) -> Outcome:
    """Decode the ALP command of one frame received at `received_at` (epoch seconds)."""
    try:
        message = parse_received(alp)
    except AlpError as exc:
        return Rejection("malformed ALP: " + exc.reason, alp, received_at, {"error": str(exc)})
    if isinstance(message, ModemAnswer):
        return _answer(entry_id, message, alp, received_at)
    return _sensor_message(entry_id, message, alp, received_at)


def _sensor_message(
    entry_id: str, message: UnsolicitedMessage, alp: bytes, received_at: float
) -> Record | Rejection:
    status = message.status
    if status is None or status.address_type in (AddressType.NBID, AddressType.NOID):
        return _unattributable(message, alp, received_at)
    if message.offset != 0:
        return Rejection(
            "partial file data",
            alp,
            received_at,
            {"file_id": message.file_id, "offset": message.offset, "length": len(message.data)},
        )
    try:
        kind, fields = record_fields(decode_file(message.file_id, message.data))
    except UnknownFileError as exc:
        return Rejection(exc.reason, alp, received_at, {"length": len(message.data)})
    except FileError as exc:
        return Rejection(exc.reason, alp, received_at, {"error": str(exc)})
    return Record(
        device_id=device_id(status.address),
        kind=kind,
        fields=fields,
        link_budget=status.link_budget,
        rx_level=status.rx_level,
        received_at=received_at,
        frame_id=entry_id,
        addressing=Addressing(status.address_type, status.access_class, status.nls_method),
    )


def _answer(entry_id: str, answer: ModemAnswer, alp: bytes, received_at: float) -> CommandAnswer:
    status = answer.status
    attributable = status is not None and status.address_type in (AddressType.UID, AddressType.VID)
    device = device_id(status.address) if attributable and status is not None else None
    record = None
    file = answer.file
    if file is not None and device is not None:
        carried = _sensor_message(entry_id, UnsolicitedMessage(*file, status), alp, received_at)
        record = carried if isinstance(carried, Record) else None
    return CommandAnswer(
        answer.tag_id,
        answer.end_of_procedure,
        answer.error,
        device,
        record,
        received_at,
        alp,
    )


def _unattributable(message: UnsolicitedMessage, alp: bytes, received_at: float) -> Rejection:
    """NBID/NOID senders (and a missing status) name no device: the frame cannot be published."""
    status = message.status
    if status is None:
        return Rejection(
            "unattributable sender (no status)", alp, received_at, {"file_id": message.file_id}
        )
    return Rejection(
        f"unattributable sender ({status.address_type.name})",
        alp,
        received_at,
        {"file_id": message.file_id, "address": status.address.hex()},
    )
