"""A DDATA sent behind a DBIRTH the broker refused is never counted as delivered."""

from __future__ import annotations

import pytest

from gateway_common.entries import decode_dead_letter, encode
from gateway_publisher.payloads import ddata_payload

from .test_integration import T0, button, energy, wait_for

pytestmark = pytest.mark.integration


def test_ddata_behind_a_refused_dbirth_is_not_delivered_and_ends_in_the_dead_letters(
    private_broker, tmp_path, topic_root, subscriber, start_publisher, records_stream, redis_client
) -> None:
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite #\ntopic deny {topic_root}/proj/DBIRTH/#\n")
    mosq = private_broker(f"acl_file {acl}")
    live = subscriber("127.0.0.1", mosq.port, f"{topic_root}/#")
    records = [button("N1", T0), energy("N1", T0 + 1), button("N1", T0 + 2, 0)]
    ids = [records_stream.add(record) for record in records]

    pub = start_publisher("127.0.0.1", mosq.port, max_attempts=3)

    assert wait_for(lambda: len(records_stream.dead()) == 3)
    letters = [decode_dead_letter(raw) for raw in records_stream.dead()]
    assert [letter.source_id for letter in letters] == ids
    for letter, record in zip(letters, records, strict=True):
        assert letter.reason == "broker refused DBIRTH: Not authorized (0x87)"
        assert letter.stage == "publisher"
        assert letter.attempts == 3
        assert letter.raw == encode(record)
    assert records_stream.outstanding() == 0
    assert pub.metric("gateway_records_published_total") == 0
    assert pub.metric("gateway_publish_latency_seconds_count") == 0
    assert pub.metric("gateway_dead_letters_total", {"reason": "broker_refused"}) == 3
    assert redis_client.hlen(records_stream.keys.devices) == 0  # no reading delivered
    # The broker did take every DDATA (its ACL allows them): three rounds, each in order,
    # each behind a DBIRTH that it refused. None of them counted.
    got = live.quiet(0.5)
    assert [m.topic.split("/")[2] for m in got] == ["DDATA"] * 9
    assert [m.payload for m in got] == [ddata_payload(r) for r in records] * 3
