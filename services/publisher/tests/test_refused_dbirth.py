"""Records the broker will not take: DDATA behind a refused DBIRTH, PUBLISH packets above the
broker's maximum packet size, a publish the broker answers by closing the connection. None is
ever counted as delivered, and none holds back the records behind it for long."""

from __future__ import annotations

import pytest

from gateway_common.entries import decode_dead_letter, encode
from gateway_devkit.polling import wait_until
from gateway_publisher.payloads import ddata_payload

from .conftest import CuttableProxy
from .test_integration import T0, button, energy

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

    assert wait_until(lambda: len(records_stream.dead()) == 3)
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


def test_a_record_too_large_for_the_broker_goes_to_the_dead_letters_at_once(
    private_broker, topic_root, subscriber, start_publisher, records_stream
) -> None:
    """A broker closes the connection on a PUBLISH above the Maximum Packet Size it announced:
    sending it anyway would cut the link again after every reconnection, holding everything
    behind it back forever."""
    mosq = private_broker("max_packet_size 1100")
    live = subscriber("127.0.0.1", mosq.port, f"{topic_root}/#")
    records = [button("Q1", T0), energy("Q2", T0 + 1), button("Q1", T0 + 2, 0)]
    ids = [records_stream.add(record) for record in records]

    pub = start_publisher("127.0.0.1", mosq.port, max_attempts=3)

    assert wait_until(lambda: len(records_stream.dead()) == 1)
    letter = decode_dead_letter(records_stream.dead()[0])
    assert letter.source_id == ids[1]
    assert letter.reason.startswith("too large for the broker: ")
    assert "above the broker's maximum packet size of 1100" in letter.reason
    assert letter.raw == encode(records[1])
    assert wait_until(lambda: records_stream.outstanding() == 0)
    assert pub.metric("gateway_records_published_total") == 2
    assert pub.metric("gateway_dead_letters_total", {"reason": "too_large"}) == 1
    got = [m for m in live.quiet(0.5) if m.topic.split("/")[2] == "DDATA"]
    assert [m.payload for m in got] == [ddata_payload(records[0]), ddata_payload(records[2])]
    assert pub.metric("gateway_mqtt_connected") == 1


def test_a_record_the_broker_closes_the_connection_on_ends_in_the_dead_letters(
    broker, proxy, topic_root, subscriber, start_publisher, records_stream, clear_retained
) -> None:
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    proxy.cut_on(b"BAD9")  # in the topic of the device's DBIRTH and DDATA
    records = [button("R1", T0), button("BAD9", T0 + 1), button("R1", T0 + 2, 0), button("R2", 9)]
    ids = [records_stream.add(record) for record in records]

    pub = start_publisher("127.0.0.1", proxy.port, max_attempts=3, window_messages=8)

    assert wait_until(lambda: len(records_stream.dead()) == 1, timeout_s=30)
    letter = decode_dead_letter(records_stream.dead()[0])
    assert letter.source_id == ids[1]
    assert letter.reason == "broker closed the connection on it: Not authorized"
    assert letter.attempts == 3
    assert letter.raw == encode(records[1])
    assert wait_until(lambda: records_stream.outstanding() == 0)
    delivered = [m for m in live.quiet(0.5) if m.topic.split("/")[2] == "DDATA" and not m.dup]
    assert sorted(m.payload for m in delivered) == sorted(
        ddata_payload(r) for r in (records[0], records[2], records[3])
    )
    assert pub.metric("gateway_records_published_total") == 3
    assert pub.metric("gateway_dead_letters_total", {"reason": "broker_refused"}) == 1
    assert proxy.cuts_on_marker >= 3


def test_a_broker_that_takes_one_message_at_a_time_never_gets_two(
    private_broker, topic_root, subscriber, start_publisher, records_stream
) -> None:
    """MQTT v5 Receive Maximum: a broker announcing 1 may close the connection on a second
    unanswered PUBLISH, so a DBIRTH and its DDATA go one after the other."""
    mosq = private_broker("max_inflight_messages 1")
    wire = CuttableProxy(("127.0.0.1", mosq.port))
    wire.answer_delay_s = 0.05
    try:
        live = subscriber("127.0.0.1", mosq.port, f"{topic_root}/#")
        records = [button("U1", T0), button("U2", T0 + 1), button("U1", T0 + 2, 0)]
        for record in records:
            records_stream.add(record)
        start_publisher("127.0.0.1", wire.port, window_messages=64)
        assert wait_until(lambda: records_stream.outstanding() == 0)
        got = [m.topic.split("/")[2] for m in live.quiet(0.5)]
        assert got == ["DBIRTH", "DDATA", "DBIRTH", "DDATA", "DDATA"]
        assert wire.most_unanswered == 1
    finally:
        wire.close()


def test_a_bare_close_on_a_record_blames_nothing(
    broker, proxy, topic_root, subscriber, start_publisher, records_stream, clear_retained
) -> None:
    """Without a DISCONNECT saying why, a lost connection looks like a network loss or a broker
    restart: nothing is dead-lettered for it, however often (the record waits;
    docs/guarantees.md)."""
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    proxy.cut_on(b"BAD8", reason_code=None)
    first, stuck = button("R3", T0), button("BAD8", T0 + 1)
    records_stream.add(first)
    records_stream.add(stuck)

    pub = start_publisher("127.0.0.1", proxy.port, max_attempts=2, window_messages=8)

    assert wait_until(lambda: proxy.cuts_on_marker >= 4, timeout_s=30)
    assert records_stream.dead() == []
    assert pub.metric("gateway_records_published_total") == 1
    assert records_stream.outstanding() == 1
    delivered = [m.payload for m in live.quiet(0.3) if m.topic.split("/")[2] == "DDATA"]
    assert ddata_payload(first) in delivered


def test_a_dbirth_refused_while_the_broker_takes_one_message_at_a_time(
    private_broker, tmp_path, topic_root, subscriber, start_publisher, records_stream
) -> None:
    """With a Receive Maximum of 1 the DBIRTH goes alone; refused, it counts against the record
    waiting for it, which ends in the dead letters instead of the DBIRTH going out forever."""
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite #\ntopic deny {topic_root}/proj/DBIRTH/edge1/V1\n")
    mosq = private_broker(f"max_inflight_messages 1\nacl_file {acl}")
    live = subscriber("127.0.0.1", mosq.port, f"{topic_root}/#")
    refused, fine = button("V1", T0), button("V2", T0 + 1)
    refused_id = records_stream.add(refused)
    records_stream.add(fine)

    pub = start_publisher("127.0.0.1", mosq.port, max_attempts=3)

    assert wait_until(lambda: len(records_stream.dead()) == 1)
    letter = decode_dead_letter(records_stream.dead()[0])
    assert letter.source_id == refused_id
    assert letter.reason == "broker refused DBIRTH: Not authorized (0x87)"
    assert letter.attempts == 3
    assert wait_until(lambda: records_stream.outstanding() == 0)
    assert pub.metric("gateway_records_published_total") == 1
    got = [m for m in live.quiet(0.5) if m.topic.split("/")[2] == "DDATA"]
    assert [m.payload for m in got] == [ddata_payload(fine)]
