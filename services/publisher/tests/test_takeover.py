"""The publisher takes over the records an earlier consumer name of its group left pending
(real Redis and Mosquitto on loopback)."""

from __future__ import annotations

import pytest

from gateway_common.streams import PUBLISHER_GROUP
from gateway_devkit.polling import wait_until

from .test_integration import T0, button, energy, expected, seen

pytestmark = pytest.mark.integration


def _consumers(client, stream: str) -> dict[str, int]:
    return {
        c["name"].decode(): c["pending"] for c in client.xinfo_consumers(stream, PUBLISHER_GROUP)
    }


def test_records_pending_on_other_consumer_names_are_published_first_in_order(
    broker, topic_root, subscriber, start_publisher, records_stream, redis_client, clear_retained
) -> None:
    stream = records_stream.keys.records
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    records = [energy("T1", T0 + i, base=i) if i % 2 else button("T1", T0 + i) for i in range(7)]
    ids = [records_stream.add(record) for record in records]
    redis_client.xgroup_create(stream, PUBLISHER_GROUP, id="0")
    # The publisher ran as a container's host name, then under another name, then as this one.
    redis_client.xreadgroup(PUBLISHER_GROUP, "old-container-id", {stream: ">"}, count=2)
    redis_client.xreadgroup(PUBLISHER_GROUP, "pub-test", {stream: ">"}, count=1)
    redis_client.xreadgroup(PUBLISHER_GROUP, "renamed", {stream: ">"}, count=2)
    redis_client.xgroup_createconsumer(stream, PUBLISHER_GROUP, "never-read")
    redis_client.xdel(stream, ids[4])  # deleted while pending on "renamed": nothing to publish
    del records[4]

    pub = start_publisher(broker.host, broker.port, records_retention_s=0, trim_interval_s=0.05)

    want = expected(topic_root, [("T1", None)] + [("T1", r) for r in records])
    assert seen(live.take(len(want))) == want  # the oldest first, whoever had them
    assert live.quiet() == []
    assert wait_until(lambda: records_stream.outstanding() == 0)
    assert pub.metric("gateway_records_published_total") == len(records)
    # The other names are gone from the group, so nothing holds the trimming back any more.
    assert _consumers(redis_client, stream) == {"pub-test": 0}
    assert wait_until(lambda: redis_client.xlen(stream) == 0)


def test_a_publisher_alone_in_its_group_takes_nothing_over(
    broker, topic_root, subscriber, start_publisher, records_stream, redis_client, clear_retained
) -> None:
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    record = button("T2", T0)
    records_stream.add(record)
    start_publisher(broker.host, broker.port)
    assert seen(live.take(2)) == expected(topic_root, [("T2", None), ("T2", record)])
    assert wait_until(lambda: records_stream.outstanding() == 0)
    assert _consumers(redis_client, records_stream.keys.records) == {"pub-test": 0}
