"""The modem's answers and the devices' EnergyConfigFiles move the commands' states: routed by
tag, never to DDATA nor to the dead letters (unless no command ever had the tag)."""

from __future__ import annotations

import time

import pytest

from gateway_common.command_store import CommandStore
from gateway_common.commands import Answered, Command, CommandState, Sent
from gateway_common.records import CommandAnswer, Rejection, decode_alp
from gateway_dash7 import (
    D7Status,
    EnergyConfigFile,
    FileData,
    ModemAnswer,
    encode_unsolicited,
)
from gateway_devkit.polling import wait_until

pytestmark = pytest.mark.integration

UID = bytes.fromhex("323636300039004C")
DEVICE = "323636300039004C"
STATUS = D7Status(address=UID, link_budget=77)
T0 = 1_700_000_000.0


def _config(interval_s: int, enabled: bool = True) -> FileData:
    return FileData(62, 0, EnergyConfigFile(interval_s, enabled).encode())


def response(tag: int, interval_s: int | None = None) -> bytes:
    file = None if interval_s is None else _config(interval_s)
    return ModemAnswer(tag, end_of_procedure=False, error=False, status=STATUS, file=file).encode()


def completion(tag: int, *, error: bool = False) -> bytes:
    return ModemAnswer(tag, end_of_procedure=True, error=error, status=None).encode()


def sent_command(store: CommandStore, tag: int, interval_s: int = 300) -> Command:
    command = store.submit(
        Command.queued(
            store.next_id(), DEVICE, interval_s, enabled=True, source="mqtt", at=T0, timeout_s=1e6
        )
    )
    done = store.apply(command.id, Sent(T0 + 1, tag))
    assert done is not None
    return done.after


def handled(streams) -> bool:
    """Every frame delivered to the decoders and acknowledged."""
    (group,) = streams.client.xinfo_groups(streams.keys.frames)
    return group["lag"] == 0 and group["pending"] == 0


def state(store: CommandStore, command_id: str) -> CommandState:
    command = store.get(command_id)
    assert command is not None
    return command.state


# ------------------------------------------------------------------ pure: the frame's outcome


def test_answers_are_their_own_outcome() -> None:
    completed = decode_alp("1-0", bytes.fromhex("62D700A32A"), T0)
    assert completed == CommandAnswer(
        tag=42,
        end_of_procedure=True,
        error=False,
        device_id=None,
        record=None,
        received_at=T0,
        raw=bytes.fromhex("62D700A32A"),
    )
    carried = decode_alp("2-0", response(7, interval_s=300), T0)
    assert isinstance(carried, CommandAnswer)
    assert carried.device_id == DEVICE
    assert carried.record is not None
    assert (carried.record.kind, carried.record.fields) == (
        "energy_config",
        {"interval_s": 300, "enabled": True},
    )
    assert carried.record.link_budget == 77
    malformed = decode_alp("3-0", bytes.fromhex("A32AA32A"), T0)
    assert isinstance(malformed, Rejection)
    assert malformed.reason == "malformed ALP: not one tag response"


# ------------------------------------------------------------------ the decoder


def test_an_acknowledged_command_is_confirmed_by_the_new_values(
    streams, start_decoder, redis_client
) -> None:
    store = CommandStore(redis_client, streams.keys)
    command = sent_command(store, tag=42)
    streams.add_frames([response(42), completion(42)], received_at=T0 + 10)
    decoder = start_decoder()
    assert wait_until(lambda: handled(streams))
    assert state(store, command.id) is CommandState.ACKNOWLEDGED
    assert streams.outputs() == 0  # neither DDATA nor dead letters
    assert store.get(command.id).responses == 1  # type: ignore[union-attr]
    # the device's EnergyConfigFile, unsolicited, after the write: confirmed
    config = _config(300)
    streams.add_frames([encode_unsolicited(62, config.data, STATUS)], received_at=T0 + 20)
    assert wait_until(lambda: state(store, command.id) is CommandState.CONFIRMED)
    assert [r.kind for r in streams.records()] == ["energy_config"]
    # The decoder counts a frame once it has handled it, just after the store's write.
    metrics = (
        ("gateway_command_answers_total", "applied", 2),
        ("gateway_frames_decoded_total", "answer", 2),
        ("gateway_command_reports_total", "confirmed", 1),
    )
    assert wait_until(
        lambda: all(decoder.metric(name, result=result) == n for name, result, n in metrics)
    ), [decoder.metric(name, result=result) for name, result, _n in metrics]


def test_a_response_carrying_the_new_file_confirms_and_is_a_record(
    streams, start_decoder, redis_client
) -> None:
    store = CommandStore(redis_client, streams.keys)
    command = sent_command(store, tag=5, interval_s=120)
    streams.add_frames([response(5, interval_s=120), completion(5)], received_at=T0 + 10)
    start_decoder()
    assert wait_until(lambda: handled(streams))
    assert state(store, command.id) is CommandState.CONFIRMED
    (record,) = streams.records()
    assert (record.device_id, record.fields) == (DEVICE, {"interval_s": 120, "enabled": True})
    assert streams.dead() == []


def test_refusal_unknown_tags_and_late_answers(streams, start_decoder, redis_client) -> None:
    store = CommandStore(redis_client, streams.keys)
    refused = sent_command(store, tag=9)
    ids = streams.add_frames(
        [completion(9, error=True), completion(200), completion(9)], received_at=T0 + 10
    )
    decoder = start_decoder()
    assert wait_until(lambda: handled(streams))
    failed = store.get(refused.id)
    assert failed is not None
    assert failed.state is CommandState.FAILED
    assert "error flag" in failed.reason
    (letter,) = streams.dead()
    assert (letter.source_id, letter.reason, letter.detail) == (
        ids[1],
        "command answer for unknown tag 200",
        {"tag": 200, "counter": 1},
    )
    assert decoder.metric("gateway_command_answers_total", result="late") == 1
    assert decoder.metric("gateway_command_answers_total", result="unknown_tag") == 1


def test_other_values_after_the_acknowledgement_fail_it(
    streams, start_decoder, redis_client
) -> None:
    store = CommandStore(redis_client, streams.keys)
    command = sent_command(store, tag=3, interval_s=300)
    store.apply(command.id, Answered(T0 + 5, end_of_procedure=True, error=False))
    streams.add_frames(
        [encode_unsolicited(62, _config(600, enabled=False).data, STATUS)], received_at=T0 + 10
    )
    start_decoder()
    assert wait_until(lambda: state(store, command.id) is CommandState.FAILED)
    failed = store.get(command.id)
    assert failed is not None
    assert failed.reason == "the device reports interval 600 s, disabled after acknowledging"
    assert [r.kind for r in streams.records()] == ["energy_config"]


def test_a_redelivered_answer_changes_nothing(streams, start_decoder, redis_client) -> None:
    store = CommandStore(redis_client, streams.keys)
    command = sent_command(store, tag=11)
    streams.add_frames([completion(11)] * 3, received_at=time.time())
    start_decoder()
    assert wait_until(lambda: handled(streams))
    acked = store.get(command.id)
    assert acked is not None
    assert acked.state is CommandState.ACKNOWLEDGED
    assert acked.version == 2  # sent, acknowledged: the copies changed nothing
