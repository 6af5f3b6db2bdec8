"""The publisher trims `{p}:records` behind every consumer group's acknowledgements."""

from __future__ import annotations

import time

import pytest

from gateway_common.entries import Record
from gateway_devkit.polling import wait_until

pytestmark = pytest.mark.integration

T0 = 1_767_225_600.0


def _button(device_id: str, received_at: float, state: int) -> Record:
    return Record(
        device_id=device_id,
        kind="button",
        fields={"button_id": 0, "mask": 1, "buttons_state": state},
        link_budget=60,
        rx_level=57,
        received_at=received_at,
        frame_id="0-2",
    )


def _ids(client, stream: str) -> list[str]:
    return [entry_id.decode() for entry_id, _ in client.xrange(stream)]


def test_published_records_are_trimmed_behind_every_group(
    broker, subscriber, topic_root, start_publisher, records_stream, redis_client, clear_retained
) -> None:
    stream = records_stream.keys.records
    ids = [records_stream.add(_button("R1", T0 + i, i % 2)) for i in range(5)]
    # another consumer group (an audit tool, say) that has processed the first two only
    redis_client.xgroup_create(stream, "audit", id="0")
    redis_client.xreadgroup("audit", "auditor", {stream: ">"}, count=2)
    redis_client.xack(stream, "audit", *ids[:2])
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")

    pub = start_publisher(broker.host, broker.port, records_retention_s=0, trim_interval_s=0.05)

    live.take(6)  # DBIRTH + 5 DDATA
    assert wait_until(lambda: records_stream.outstanding() == 0)
    assert wait_until(lambda: _ids(redis_client, stream) == ids[2:])
    time.sleep(0.2)  # more rounds: what the audit group has not read stays
    assert _ids(redis_client, stream) == ids[2:]
    assert pub.metric("gateway_stream_trimmed_entries_total", {"stream": stream}) == 2

    redis_client.xreadgroup("audit", "auditor", {stream: ">"})
    redis_client.xack(stream, "audit", *ids[2:])
    assert wait_until(lambda: redis_client.xlen(stream) == 0)


def test_records_younger_than_the_retention_are_kept(
    broker, start_publisher, records_stream, redis_client, clear_retained
) -> None:
    ids = [records_stream.add(_button("R2", T0 + i, i % 2)) for i in range(3)]
    start_publisher(broker.host, broker.port, trim_interval_s=0.05)  # default: one day
    assert wait_until(lambda: records_stream.outstanding() == 0)
    time.sleep(0.2)
    assert _ids(redis_client, records_stream.keys.records) == ids
