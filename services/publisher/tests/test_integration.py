"""The publisher against the real Redis and real Mosquitto brokers (loopback)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgpack
import pytest

from gateway_common.entries import Record, decode_dead_letter, encode
from gateway_common.streams import PUBLISHER_GROUP
from gateway_devkit.polling import wait_until
from gateway_publisher.payloads import dbirth_payload, ddata_payload
from pki import issue, make_ca

pytestmark = pytest.mark.integration

T0 = 1_767_225_600.0


def energy(device_id: str, received_at: float, base: int = 1000, valid: bool = True) -> Record:
    return Record(
        device_id=device_id,
        kind="energy",
        fields={
            "apparent_energy_vah": [base, base + 1, base + 2],
            "active_energy_wh": [base + 10, base + 11, base + 12],
            "current_ma": [100, -200, 300],
            "voltage_v": [230, 231, 229],
            "measurement_valid": valid,
        },
        link_budget=71,
        rx_level=57,
        received_at=received_at,
        frame_id="0-1",
    )


def button(device_id: str, received_at: float, state: int = 1) -> Record:
    return Record(
        device_id=device_id,
        kind="button",
        fields={"button_id": 0, "mask": 1, "buttons_state": state},
        link_budget=60,
        rx_level=57,
        received_at=received_at,
        frame_id="0-2",
    )


def energy_config(device_id: str, received_at: float) -> Record:
    return Record(
        device_id=device_id,
        kind="energy_config",
        fields={"interval_s": 600, "enabled": True},
        link_budget=70,
        rx_level=57,
        received_at=received_at,
        frame_id="0-3",
    )


def topic(root: str, kind: str, device: str) -> str:
    return f"{root}/proj/{kind}/edge1/{device}"


def expected(root: str, items: list[tuple[str, Record | None]]) -> list[tuple[str, bytes]]:
    """(topic, payload) for a DBIRTH (record None, item = device id) or a record's DDATA."""
    out: list[tuple[str, bytes]] = []
    for device, record in items:
        if record is None:
            out.append((topic(root, "DBIRTH", device), dbirth_payload()))
        else:
            out.append((topic(root, "DDATA", device), ddata_payload(record) or b""))
    return out


def seen(messages) -> list[tuple[str, bytes]]:
    return [(m.topic, m.payload) for m in messages]


# ------------------------------------------------------------------ main flow


def test_records_are_published_after_a_dbirth_and_acknowledged(
    broker, topic_root, subscriber, start_publisher, records_stream, redis_client, clear_retained
) -> None:
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    a1, a2, a3 = energy("A1", T0 + 0.001), button("A1", T0 + 1.5), energy_config("A1", T0 + 2)
    b1, b2, b3 = (
        energy("B2", T0 + 3, valid=False),
        energy_config("B2", T0 + 4),
        button("B2", T0 + 5, 0),
    )
    for record in (a1, a2, a3, b1, b2, b3):
        records_stream.add(record)

    pub = start_publisher(broker.host, broker.port)

    want = expected(
        topic_root, [("A1", None), ("A1", a1), ("A1", a2), ("B2", None), ("B2", b1), ("B2", b3)]
    )
    got = live.take(len(want))
    assert seen(got) == want
    assert live.quiet() == []  # configuration files are not published, nothing twice
    assert json.loads(got[1].payload)["metrics"][0]["timestamp"] == 1_767_225_600_001

    assert wait_until(lambda: records_stream.outstanding() == 0)
    assert redis_client.xpending(records_stream.keys.records, PUBLISHER_GROUP)["pending"] == 0
    devices = {
        k.decode(): msgpack.unpackb(v)
        for k, v in redis_client.hgetall(records_stream.keys.devices).items()
    }
    assert devices == {
        "A1": {
            "first_seen": T0 + 0.001,
            "last_seen": T0 + 2,
            "readings": 3,
            "last_link_budget": 70,
            "interval_s": 600,
            "enabled": True,
        },
        "B2": {
            "first_seen": T0 + 3,
            "last_seen": T0 + 5,
            "readings": 3,
            "last_link_budget": 60,
            "interval_s": 600,
            "enabled": True,
        },
    }
    assert pub.metric("gateway_records_published_total") == 4
    assert pub.metric("gateway_mqtt_connected") == 1
    assert pub.metric("gateway_publish_latency_seconds_count") == 4
    assert wait_until(lambda: pub.metric("gateway_backlog_records") == 0, 3)

    # A subscriber that comes later gets each device's DBIRTH, retained.
    late = subscriber(broker.host, broker.port, f"{topic_root}/#")
    retained = sorted(late.take(2, 3.0), key=lambda m: m.topic)
    assert [(m.topic, m.payload, m.retain) for m in retained] == [
        (topic(topic_root, "DBIRTH", "A1"), dbirth_payload(), True),
        (topic(topic_root, "DBIRTH", "B2"), dbirth_payload(), True),
    ]


def test_own_pending_records_are_published_first_in_order(
    broker, topic_root, subscriber, start_publisher, records_stream, redis_client, clear_retained
) -> None:
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    records = [button("C3", T0 + i, i % 2) for i in range(4)]
    for record in records[:3]:
        records_stream.add(record)
    # A previous run of this consumer read two records and died before publishing them.
    redis_client.xgroup_create(records_stream.keys.records, PUBLISHER_GROUP, id="0")
    redis_client.xreadgroup(
        PUBLISHER_GROUP, "pub-test", {records_stream.keys.records: ">"}, count=2
    )
    records_stream.add(records[3])

    start_publisher(broker.host, broker.port)

    want = expected(topic_root, [("C3", None)] + [("C3", r) for r in records])
    assert seen(live.take(len(want))) == want
    assert wait_until(lambda: records_stream.outstanding() == 0)


def test_a_window_of_messages_keeps_the_order(
    broker, topic_root, subscriber, start_publisher, records_stream, clear_retained
) -> None:
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    records = [energy(f"D{i % 3}", T0 + i, base=i) for i in range(300)]
    for record in records:
        records_stream.add(record)
    started = time.monotonic()
    pub = start_publisher(broker.host, broker.port, window_messages=16)
    got = live.take(303, 20.0)
    elapsed = time.monotonic() - started
    ddata = [m for m in got if "/DDATA/" in m.topic]
    assert [m.payload for m in ddata] == [ddata_payload(r) for r in records]
    births = [i for i, m in enumerate(got) if "/DBIRTH/" in m.topic]
    assert births == [0, 2, 4]  # each device's DBIRTH right before its first DDATA
    assert wait_until(lambda: records_stream.outstanding() == 0)
    assert pub.metric("gateway_records_published_total") == 300
    print(f"300 records through a window of 16 in {elapsed:.2f} s")


def test_bad_entries_go_to_the_dead_letters_at_once(
    broker, topic_root, subscriber, start_publisher, records_stream, clear_retained
) -> None:
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    garbage_id = records_stream.add_raw(b"\x93not a record")
    broken = Record("E4", "energy", {"measurement_valid": True}, 1, 1, T0, "0-1")
    broken_id = records_stream.add(broken)
    slash_id = records_stream.add(button("E/4", T0))
    good = button("E4", T0 + 1)
    records_stream.add(good)

    pub = start_publisher(broker.host, broker.port)

    assert seen(live.take(2)) == expected(topic_root, [("E4", None), ("E4", good)])
    assert wait_until(lambda: records_stream.outstanding() == 0)
    assert wait_until(lambda: len(records_stream.dead()) == 3)
    letters = {d.source_id: d for d in map(decode_dead_letter, records_stream.dead())}
    assert set(letters) == {garbage_id, broken_id, slash_id}
    assert all(d.stage == "publisher" and d.attempts == 1 for d in letters.values())
    assert letters[garbage_id].reason.startswith("undecodable record")
    assert letters[garbage_id].raw == b"\x93not a record"
    assert letters[broken_id].raw == encode(broken)
    assert "apparent_energy_vah" in letters[broken_id].reason
    assert "device id" in letters[slash_id].reason
    assert pub.metric("gateway_dead_letters_total", {"reason": "undecodable"}) == 1
    assert pub.metric("gateway_dead_letters_total", {"reason": "bad_record"}) == 2


# ------------------------------------------------------------------ private brokers


def test_records_wait_in_redis_while_the_broker_is_down(
    private_broker, topic_root, subscriber, start_publisher, records_stream
) -> None:
    mosq = private_broker()
    # A subscriber with a session the broker keeps across its restart, so that nothing the
    # publisher sends right after the restart is missed by the test.
    live = subscriber(
        "127.0.0.1", mosq.port, f"{topic_root}/#", session_expiry_s=300, client_id="s1"
    )
    before = [energy("F5", T0 + i, base=i) for i in range(3)]
    for record in before:
        records_stream.add(record)
    pub = start_publisher("127.0.0.1", mosq.port)
    want = expected(topic_root, [("F5", None)] + [("F5", r) for r in before])
    first_round = live.take(len(want))
    assert seen(first_round) == want
    assert wait_until(lambda: records_stream.outstanding() == 0)

    live.close()  # cleanly, with every message acknowledged: the broker keeps the session
    mosq.stop()
    assert wait_until(lambda: pub.metric("gateway_mqtt_connected") == 0, 5)
    during = [energy("F5", T0 + 10 + i, base=10 + i) for i in range(3)]
    for record in during:
        records_stream.add(record)
    time.sleep(0.5)
    assert records_stream.outstanding() == 3  # waiting in Redis, not in memory
    assert wait_until(lambda: pub.metric("gateway_backlog_records") == 3, 3)
    assert pub.metric("gateway_records_published_total") == 3

    mosq.start()  # same port, with the subscriber's saved session
    live = subscriber(
        "127.0.0.1", mosq.port, f"{topic_root}/#", session_expiry_s=300, client_id="s1"
    )
    want = expected(topic_root, [("F5", None)] + [("F5", r) for r in during])
    # The broker may redeliver (DUP) to the test's own session a message whose PUBACK the
    # subscriber had not sent before it closed: that is the broker and the subscriber, not the
    # publisher, so such copies of what arrived before the restart are set aside.
    redelivered = set(seen(first_round))
    fresh: list = []
    while len(fresh) < len(want):
        got = live.take(1)
        if not got:
            break
        if not (got[0].dup and (got[0].topic, got[0].payload) in redelivered):
            fresh += got
    assert seen(fresh) == want  # a new DBIRTH first, original timestamps
    assert [m for m in live.quiet() if not m.dup] == []
    assert wait_until(lambda: records_stream.outstanding() == 0)
    assert pub.metric("gateway_records_published_total") == 6
    assert pub.metric("gateway_mqtt_connected") == 1


def test_a_refused_publish_ends_in_the_dead_letters(
    private_broker, tmp_path, topic_root, subscriber, start_publisher, records_stream
) -> None:
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite #\ntopic deny {topic_root}/proj/DDATA/#\n")
    mosq = private_broker(f"acl_file {acl}")
    live = subscriber("127.0.0.1", mosq.port, f"{topic_root}/#")
    record = button("G6", T0 + 7)
    entry_id = records_stream.add(record)

    pub = start_publisher("127.0.0.1", mosq.port, max_attempts=3)

    assert wait_until(lambda: len(records_stream.dead()) == 1)
    letter = decode_dead_letter(records_stream.dead()[0])
    assert letter.reason == "broker refused: Not authorized (0x87)"
    assert letter.stage == "publisher"
    assert letter.attempts == 3
    assert letter.source_id == entry_id
    assert letter.source_stream == records_stream.keys.records
    assert letter.raw == encode(record)
    assert letter.received_at == T0 + 7
    assert records_stream.outstanding() == 0
    assert pub.metric("gateway_records_published_total") == 0
    assert pub.metric("gateway_dead_letters_total", {"reason": "broker_refused"}) == 1
    # The DBIRTH itself was allowed; the refused DDATA never reached anyone.
    assert seen(live.take(1)) == expected(topic_root, [("G6", None)])
    assert live.quiet() == []


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1/localhost, and one for another host name."""
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    issue(d, "ca", "good", "IP:127.0.0.1,DNS:localhost")
    issue(d, "ca", "wrong", "DNS:wrong.example")
    return d


def tls_conf(pki: Path, name: str) -> str:
    return f"certfile {pki / (name + '.crt')}\nkeyfile {pki / (name + '.key')}\n"


def test_tls_with_the_server_certificate_verified(
    private_broker, certificates, start_publisher, records_stream
) -> None:
    mosq = private_broker(tls_conf(certificates, "good"))
    records_stream.add(button("H7", T0))
    pub = start_publisher(
        "127.0.0.1", mosq.port, mqtt_tls="true", mqtt_ca_file=certificates / "ca.crt"
    )
    assert wait_until(lambda: records_stream.outstanding() == 0)
    assert pub.metric("gateway_records_published_total") == 1
    assert pub.metric("gateway_mqtt_connected") == 1


def test_tls_refuses_a_certificate_for_another_host_name(
    private_broker, certificates, start_publisher, records_stream
) -> None:
    mosq = private_broker(tls_conf(certificates, "wrong"))
    records_stream.add(button("H7", T0))
    pub = start_publisher(
        "127.0.0.1", mosq.port, mqtt_tls="true", mqtt_ca_file=certificates / "ca.crt"
    )
    time.sleep(2.0)
    assert pub.metric("gateway_mqtt_connected") == 0
    assert pub.metric("gateway_records_published_total") == 0
    assert records_stream.outstanding() == 1  # still waiting in Redis


def test_unacknowledged_messages_are_republished_after_a_new_dbirth(
    broker, proxy, topic_root, subscriber, start_publisher, records_stream, clear_retained
) -> None:
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    first = button("J8", T0)
    records_stream.add(first)
    start_publisher("127.0.0.1", proxy.port, window_messages=8)
    assert seen(live.take(2)) == expected(topic_root, [("J8", None), ("J8", first)])
    assert wait_until(lambda: records_stream.outstanding() == 0)

    # The broker gets the next records but its PUBACKs never come back.
    proxy.freeze()
    lost = [energy("J8", T0 + 1 + i, base=i) for i in range(5)]
    for record in lost:
        records_stream.add(record)
    assert seen(live.take(5)) == expected(topic_root, [("J8", r) for r in lost])
    time.sleep(0.3)
    assert records_stream.outstanding() == 5  # published, but not acknowledged: still pending

    proxy.cut()
    later = button("J8", T0 + 10, 0)
    records_stream.add(later)
    # New connection: DBIRTH, then the pending records again, in order, then the new one.
    want = expected(topic_root, [("J8", None)] + [("J8", r) for r in [*lost, later]])
    assert seen(live.take(len(want))) == want
    assert live.quiet() == []  # paho did not resend its own copies
    assert wait_until(lambda: records_stream.outstanding() == 0)


def test_a_redis_outage_is_waited_out(
    broker,
    topic_root,
    subscriber,
    start_publisher,
    private_records,
    clear_retained,
) -> None:
    stream, redis_server = private_records, private_records.server
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    first, second = button("K9", T0), button("K9", T0 + 1, 0)
    stream.add(first)
    pub = start_publisher(broker.host, broker.port, redis_url=redis_server.url)
    assert seen(live.take(2)) == expected(topic_root, [("K9", None), ("K9", first)])
    assert wait_until(lambda: stream.outstanding() == 0)

    redis_server.stop()
    time.sleep(1.0)
    assert pub.thread.is_alive()
    assert pub.errors == []
    redis_server.start()  # same data (AOF), same port
    stream.add(second)
    assert seen(live.take(1)) == expected(topic_root, [("K9", second)])
    assert wait_until(lambda: stream.outstanding() == 0)


def test_the_mqtt_session_stays_up_while_the_publisher_waits_on_redis(
    broker, topic_root, subscriber, start_publisher, records_stream, clear_retained
) -> None:
    """paho runs on the publisher's thread: a long blocking read must not starve keep-alives
    (the broker drops a client silent for 1.5 x keep-alive; 5 s x 1.5 < 2 reads of 5 s)."""
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    first, later = energy("K1", T0), energy("K1", T0 + 60, base=2000)
    records_stream.add(first)
    start_publisher(broker.host, broker.port, keepalive_s=5, block_ms=5000)
    assert seen(live.take(2)) == expected(topic_root, [("K1", None), ("K1", first)])
    time.sleep(9)  # idle: the publisher blocks on Redis
    records_stream.add(later)
    # The same connection: no new DBIRTH before the DDATA.
    assert seen(live.take(1)) == expected(topic_root, [("K1", later)])
    assert live.quiet() == []
    assert wait_until(lambda: records_stream.outstanding() == 0)
