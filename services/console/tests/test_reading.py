"""What the console reads from the real Redis: the readings index, one device's history (from the
frames archive), the snapshot; and that reading changes nothing (no group, no consumer, no key
written)."""

from __future__ import annotations

import time

import pytest

from gateway_common.streams import ENTRY_FIELD, StreamKeys
from gateway_console.history import read_history
from gateway_console.readings import ReadingsIndex
from gateway_console.snapshot import collect_snapshot

from .conftest import add_frames, add_readings, add_records, energy_record, register

pytestmark = pytest.mark.integration

A, B = "B5700009151DC", "B57000091"
#: A VID device and a UID device whose address ends in the VID's two bytes.
VID, UID = "ABCD", "B5700009151ABCD"


def test_the_index_keeps_the_newest_reading_and_counts_a_day(redis_client, stream_prefix) -> None:
    keys = StreamKeys(stream_prefix)
    now = time.time()
    add_records(
        redis_client,
        keys,
        energy_record(A, now - 600, voltage=(230, 230, 230)),
        energy_record(A, now - 30, voltage=(231, 232, 233)),
        energy_record(B, now - 20),
    )
    redis_client.xadd(keys.records, {ENTRY_FIELD: b"not msgpack"})
    index = ReadingsIndex(keys.records)
    assert index.update(redis_client, now) == 4
    views = index.views()
    assert views[A].last_24h == 2
    assert views[A].latest is not None
    assert views[A].latest.fields["voltage_v"] == [231, 232, 233]
    assert views[B].last_24h == 1
    assert index.unreadable == 1
    add_records(redis_client, keys, energy_record(A, now - 1, voltage=(240, 240, 240)))
    assert index.update(redis_client, now) == 1  # only what was appended since
    assert index.views()[A].last_24h == 3
    # a day later, the old readings no longer count
    index.update(redis_client, now + 86_400 - 10)
    assert index.views()[A].last_24h == 1


def test_history_finds_one_device_among_many(redis_client, stream_prefix) -> None:
    keys = StreamKeys(stream_prefix)
    now = time.time()
    others = [energy_record(f"B57{i:06X}", now - 100) for i in range(3000)]
    mine = [energy_record(A, now - 3000 + 600 * i, voltage=(230 + i, 230, 230)) for i in range(5)]
    add_frames(redis_client, keys, *others[:1500], *mine, *others[1500:])
    points = read_history(redis_client, keys, A, now - 86_400)
    assert [p.voltage_v[0] for p in points if p.voltage_v] == [230, 231, 232, 233, 234]
    assert read_history(redis_client, keys, A, now - 1000)[0].at == pytest.approx(now - 600)
    assert read_history(redis_client, keys, "ABCDEF", now - 86_400) == []


def test_history_reaches_back_past_the_records_retention(redis_client, stream_prefix) -> None:
    # Three days ago: the records stream (one day) no longer holds it, the frames archive does.
    keys = StreamKeys(stream_prefix)
    now = time.time()
    old = energy_record(A, now - 3 * 86_400, voltage=(221, 222, 223), energy_wh=(500, 600, 700))
    add_frames(redis_client, keys, old)
    add_readings(redis_client, keys, energy_record(A, now - 60, voltage=(235, 235, 235)))
    points = read_history(redis_client, keys, A, now - 7 * 86_400)
    assert [p.voltage_v for p in points] == [(221, 222, 223), (235, 235, 235)]
    assert points[0].at == pytest.approx(now - 3 * 86_400)
    assert points[0].active_energy_wh == (500, 600, 700)
    assert points[0].valid
    assert points[0].link_budget == old.link_budget
    # the window's start is by entry id: a day back does not reach it
    assert [p.voltage_v for p in read_history(redis_client, keys, A, now - 86_400)] == [
        (235, 235, 235)
    ]


def test_history_tells_a_vid_from_a_uid_ending_in_its_bytes(redis_client, stream_prefix) -> None:
    keys = StreamKeys(stream_prefix)
    now = time.time()
    assert int(UID, 16).to_bytes(8, "big").endswith(int(VID, 16).to_bytes(2, "big"))
    add_frames(
        redis_client,
        keys,
        energy_record(VID, now - 300, voltage=(201, 201, 201)),
        energy_record(UID, now - 200, voltage=(202, 202, 202)),
        energy_record(VID, now - 100, voltage=(203, 203, 203)),
    )
    since = now - 3600
    assert [p.voltage_v for p in read_history(redis_client, keys, VID, since)] == [
        (201, 201, 201),
        (203, 203, 203),
    ]
    assert [p.voltage_v for p in read_history(redis_client, keys, UID, since)] == [(202, 202, 202)]


def test_history_skips_frames_the_decoder_rejects(redis_client, stream_prefix) -> None:
    keys = StreamKeys(stream_prefix)
    now = time.time()
    address = int(A, 16).to_bytes(8, "big")
    redis_client.xadd(keys.frames, {ENTRY_FIELD: b"not msgpack " + address})
    redis_client.xadd(keys.frames, {b"x": address})
    add_frames(redis_client, keys, energy_record(A, now, voltage=(233, 233, 233)))
    points = read_history(redis_client, keys, A, now - 3600)
    assert [p.voltage_v for p in points] == [(233, 233, 233)]


def test_reading_writes_nothing(redis_client, stream_prefix) -> None:
    keys = StreamKeys(stream_prefix)
    now = time.time()
    register(redis_client, keys, A, last_seen=now - 10)
    add_readings(redis_client, keys, energy_record(A, now - 10))
    before = sorted(redis_client.scan_iter(match=f"{stream_prefix}:*"))
    snapshot = collect_snapshot(redis_client, keys, ReadingsIndex(keys.records), 600.0)
    assert len(read_history(redis_client, keys, A, now - 3600)) == 1
    assert sorted(redis_client.scan_iter(match=f"{stream_prefix}:*")) == before
    assert redis_client.xinfo_groups(keys.records) == []
    assert redis_client.xinfo_groups(keys.frames) == []
    assert snapshot.devices[0].device_id == A
    assert snapshot.devices[0].readings is not None
    assert snapshot.status.records_length == 1
