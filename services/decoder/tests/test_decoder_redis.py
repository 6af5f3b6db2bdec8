"""The decoder against the real Redis: streams, the atomic handoff, pending, claims, failures."""

from __future__ import annotations

import threading

import pytest

from gateway_common.entries import Addressing, FrameEntry, Record, encode
from gateway_common.records import decode_entry
from gateway_common.streams import DECODER_GROUP
from gateway_dash7 import AddressType, ButtonFile, D7Status, EnergyFile, encode_unsolicited
from gateway_decoder.handoff import FrameHandoff, Output
from gateway_devkit.polling import wait_until

pytestmark = pytest.mark.integration

UID = bytes.fromhex("323636300039004C")


def _button(n: int, address: bytes = UID) -> bytes:
    return encode_unsolicited(51, ButtonFile(n % 256, 1, n % 2).encode(), D7Status(address=address))


def _handoff(redis_client, streams, consumer: str, batch_size: int = 100) -> FrameHandoff:
    handoff = FrameHandoff(redis_client, streams.keys, consumer, batch_size=batch_size, block_ms=50)
    handoff.ensure_group()
    return handoff


def test_vectors_become_records_and_dead_letters(streams, start_decoder, vectors):
    cases = [case for case in vectors if case.get("alp_hex")]
    ids = streams.add_frames([bytes.fromhex(case["alp_hex"]) for case in cases])
    bad_id = streams.add_raw({b"d": b"\xc1 not msgpack"})
    decoder = start_decoder()
    assert wait_until(lambda: streams.outputs() == len(cases) + 1)
    assert wait_until(lambda: streams.pending() == 0)

    records = {record.frame_id: record for record in streams.records()}
    dead = {letter.source_id: letter for letter in streams.dead()}
    for number, (case, frame_id) in enumerate(zip(cases, ids, strict=True)):
        expect = case["expect"]
        if "dead_letter" in expect:
            letter = dead[frame_id]
            assert letter.reason == expect["dead_letter"]
            assert letter.stage == "decoder"
            assert letter.source_stream == streams.keys.frames
            assert letter.raw == bytes.fromhex(case["alp_hex"])
            assert letter.received_at == 1_700_000_000.5 + number
            continue
        record = records[frame_id]
        assert (record.device_id, record.kind) == (expect["device_id"], expect["file"])
        assert record.received_at == 1_700_000_000.5 + number
    assert dead[bad_id].reason == "undecodable entry: not a msgpack entry"
    assert dead[bad_id].raw == b"\xc1 not msgpack"
    assert dead[bad_id].received_at is None
    assert len(records) + len(dead) == len(cases) + 1

    assert wait_until(lambda: decoder.metric("gateway_frames_decoded_total", result="dead") == 3)
    assert decoder.metric("gateway_frames_decoded_total", result="record") == len(records)
    assert decoder.metric("gateway_dead_letters_total", reason="unknown file id 64") == 1
    assert decoder.metric("gateway_decode_seconds_count") == len(cases) + 1


def test_lua_handoff_appends_only_for_the_first_acknowledgement(redis_client, streams):
    (frame_id,) = streams.add_frames([_button(1)])
    first = _handoff(redis_client, streams, "replica-a")
    second = _handoff(redis_client, streams, "replica-b")
    assert [entry.entry_id for entry in first.read_new()] == [frame_id]
    claimed = second.claim("0-0", min_idle_ms=0)
    assert [entry.entry_id for entry in claimed.entries] == [frame_id]

    output = Output(frame_id, "records", b"record-from-b")
    assert second.commit([output]) == [True]
    assert first.commit([output._replace(data=b"record-from-a")]) == [False]
    assert first.commit([output._replace(target="dead")]) == [False]
    rows = redis_client.xrange(streams.keys.records)
    assert [fields for _, fields in rows] == [{b"d": b"record-from-b"}]
    assert redis_client.xlen(streams.keys.dead) == 0
    assert streams.pending() == 0


def test_lua_handoff_batches_records_and_dead_letters(redis_client, streams):
    ids = streams.add_frames([_button(n) for n in range(5)])
    handoff = _handoff(redis_client, streams, "replica-a")
    assert len(handoff.read_new()) == 5
    outputs = [
        Output(frame_id, "dead" if n % 2 else "records", f"out-{n}".encode())
        for n, frame_id in enumerate(ids)
    ]
    assert handoff.commit([outputs[0], outputs[1]]) == [True, True]
    # a batch that mixes already-handled and new frames
    assert handoff.commit(outputs) == [False, False, True, True, True]
    records = [f[b"d"] for _, f in redis_client.xrange(streams.keys.records)]
    dead = [f[b"d"] for _, f in redis_client.xrange(streams.keys.dead)]
    assert records == [b"out-0", b"out-2", b"out-4"]
    assert dead == [b"out-1", b"out-3"]
    assert streams.pending() == 0


def test_two_racing_replicas_yield_exactly_one_record_per_frame(streams, start_decoder):
    ids = streams.add_frames([_button(n) for n in range(500)])
    # A tiny claim_idle_ms makes the replicas steal each other's in-flight frames all the time.
    options = {"claim_idle_ms": 1, "claim_interval_ms": 5, "batch_size": 20}
    first = start_decoder("replica-a", **options)
    second = start_decoder("replica-b", **options)
    assert wait_until(lambda: streams.pending() == 0 and streams.outputs() >= 500, timeout_s=30)
    first.halt()
    second.halt()
    records = streams.records()
    assert sorted(record.frame_id for record in records) == sorted(ids)
    assert len(records) == 500
    assert streams.dead() == []
    handled = sum(
        replica.metric("gateway_frames_decoded_total", result="record")
        for replica in (first, second)
    )
    assert handled == 500


def test_restarted_replica_resumes_its_own_pending_frames(redis_client, streams, start_decoder):
    ids = streams.add_frames([_button(n) for n in range(30)])
    crashed = _handoff(redis_client, streams, "replica-a")
    assert len(crashed.read_new()) == 30  # read, then "killed" before handing off
    assert streams.pending() == 30
    # A long claim_idle_ms: only reading its own pending entries can recover them.
    decoder = start_decoder("replica-a", claim_idle_ms=600_000)
    assert wait_until(lambda: streams.pending() == 0)
    assert sorted(r.frame_id for r in streams.records()) == sorted(ids)
    assert decoder.metric("gateway_decoder_claimed_total") == 0


def test_other_replica_does_not_take_fresh_pending_frames(redis_client, streams, start_decoder):
    streams.add_frames([_button(n) for n in range(3)])
    _handoff(redis_client, streams, "replica-a").read_new()
    other = start_decoder("replica-b", claim_idle_ms=600_000)
    streams.add_frames([_button(9)])
    assert wait_until(lambda: streams.outputs() == 1)
    other.halt()
    assert streams.pending() == 3  # still replica-a's, not yet idle long enough


def test_frames_of_a_vanished_replica_are_claimed_after_idle_time(
    redis_client, streams, start_decoder
):
    ids = streams.add_frames([_button(n) for n in range(10)])
    _handoff(redis_client, streams, "gone-for-good").read_new()
    decoder = start_decoder("replica-b", claim_idle_ms=300, claim_interval_ms=50)
    assert wait_until(lambda: streams.pending() == 0)
    assert sorted(r.frame_id for r in streams.records()) == sorted(ids)
    assert decoder.metric("gateway_decoder_claimed_total") == 10
    consumers = redis_client.xinfo_consumers(streams.keys.frames, DECODER_GROUP)
    assert {c["name"].decode(): c["pending"] for c in consumers}["gone-for-good"] == 0


class FailingDecode:
    """Raises for the frames it is told to fail; decodes the others normally."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, entry_id, fields):
        with self._lock:
            self.calls[entry_id] = self.calls.get(entry_id, 0) + 1
        if entry_id in self.failing:
            raise ZeroDivisionError("injected failure")
        return decode_entry(entry_id, fields)


def test_unexpected_error_is_dead_lettered_after_max_attempts(streams, start_decoder):
    good, poison = streams.add_frames([_button(2), _button(1)])  # the poison has counter 1
    decode = FailingDecode({poison})
    decoder = start_decoder(decode=decode, max_attempts=3, claim_idle_ms=50, claim_interval_ms=20)
    assert wait_until(lambda: streams.outputs() == 2 and streams.pending() == 0)
    (letter,) = streams.dead()
    assert letter.reason == "decoder error: ZeroDivisionError"
    assert letter.source_id == poison
    assert letter.attempts == 3
    assert letter.raw == _button(1)
    assert letter.received_at == 1_700_000_001.5
    # The modem counter too, so that `gatewayctl dead requeue` rebuilds the whole frame entry.
    assert letter.detail == {"error": "injected failure", "counter": 1}
    assert decode.calls[poison] == 3
    assert [r.frame_id for r in streams.records()] == [good]
    assert decoder.metric("gateway_frames_decoded_total", result="error") == 3
    assert (
        decoder.metric("gateway_dead_letters_total", reason="decoder error: ZeroDivisionError") == 1
    )


def test_records_round_trip_the_shared_schema(streams, start_decoder):
    energy = EnergyFile((1, 2, 3), (4, 5, 6), (-7, 8, 9), (230, 231, 232), measurement_valid=True)
    status = D7Status(address=b"\xab\xcd", address_type=AddressType.VID)
    (frame_id,) = streams.add_frames([encode_unsolicited(52, energy.encode(), status)])
    start_decoder()
    assert wait_until(lambda: streams.outputs() == 1)
    assert streams.pending() == 0
    assert streams.records() == [
        Record(
            device_id="ABCD",
            kind="energy",
            fields={
                "apparent_energy_vah": [1, 2, 3],
                "active_energy_wh": [4, 5, 6],
                "current_ma": [-7, 8, 9],
                "voltage_v": [230, 231, 232],
                "measurement_valid": True,
            },
            link_budget=71,
            rx_level=57,
            received_at=1_700_000_000.5,
            frame_id=frame_id,
            addressing=Addressing(address_type=3, access_class=0x01, nls_method=0),
        )
    ]


def test_deleted_pending_entry_is_not_a_crash(redis_client, streams, start_decoder):
    ids = streams.add_frames([_button(1), _button(2)])
    _handoff(redis_client, streams, "replica-a").read_new()
    redis_client.xdel(streams.keys.frames, ids[0])  # trimmed while pending
    start_decoder("replica-a")
    assert wait_until(lambda: streams.pending() == 0)
    assert [r.frame_id for r in streams.records()] == [ids[1]]
    (letter,) = streams.dead()
    assert (letter.source_id, letter.reason) == (ids[0], "undecodable entry: missing field d")


def test_frame_entry_encoding_is_what_ingest_writes(streams):
    # guards the fixture helper itself: it writes the shared FrameEntry schema
    (frame_id,) = streams.add_frames([b"\x01"])
    rows = streams.client.xrange(streams.keys.frames)
    assert rows[0][0].decode() == frame_id
    assert rows[0][1] == {b"d": encode(FrameEntry(b"\x01", 1_700_000_000.5, 0))}
