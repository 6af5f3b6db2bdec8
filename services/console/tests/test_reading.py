"""What the console reads from the real Redis: the readings index, one device's history, the
snapshot; and that reading changes nothing (no group, no consumer, no key written)."""

from __future__ import annotations

import time

import pytest

from gateway_common.streams import ENTRY_FIELD, StreamKeys
from gateway_console.history import read_history
from gateway_console.readings import ReadingsIndex
from gateway_console.snapshot import collect_snapshot

from .conftest import add_records, energy_record, register

pytestmark = pytest.mark.integration

A, B = "B5700009151DC", "B57000091"


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
    add_records(redis_client, keys, *others[:1500], *mine, *others[1500:])
    points = read_history(redis_client, keys, A, now - 86_400)
    assert [p.voltage_v[0] for p in points if p.voltage_v] == [230, 231, 232, 233, 234]
    assert read_history(redis_client, keys, A, now - 1000)[0].at == pytest.approx(now - 600)
    assert read_history(redis_client, keys, "ABCDEF", now - 86_400) == []


def test_reading_writes_nothing(redis_client, stream_prefix) -> None:
    keys = StreamKeys(stream_prefix)
    now = time.time()
    register(redis_client, keys, A, last_seen=now - 10)
    add_records(redis_client, keys, energy_record(A, now - 10))
    before = sorted(redis_client.scan_iter(match=f"{stream_prefix}:*"))
    snapshot = collect_snapshot(redis_client, keys, ReadingsIndex(keys.records), 600.0)
    read_history(redis_client, keys, A, now - 3600)
    assert sorted(redis_client.scan_iter(match=f"{stream_prefix}:*")) == before
    assert redis_client.xinfo_groups(keys.records) == []
    assert snapshot.devices[0].device_id == A
    assert snapshot.devices[0].readings is not None
    assert snapshot.status.records_length == 1
