"""The publisher's downlink: DCMD read and validated (pure), DBIRTH/DDATA with metrics 16 and 17
only when it is on (off: byte for byte the 15-metric contract), and DCMDs through the real
Mosquitto and Redis to queued or rejected commands."""

from __future__ import annotations

import json
import time
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway_common.command_store import CommandStore
from gateway_common.commands import CommandState
from gateway_common.devices import DeviceEntry
from gateway_common.entries import Record
from gateway_common.records import decode_alp
from gateway_common.streams import StreamKeys
from gateway_devkit.polling import wait_until
from gateway_publisher.dcmd import MAX_PAYLOAD_BYTES, CommandRequest, DcmdError, parse_dcmd
from gateway_publisher.payloads import METRICS, dbirth_payload, ddata_payload
from gateway_publisher.topics import TopicScheme

SCHEME = TopicScheme("root", "proj", "edge1")
TOPIC = "root/proj/DCMD/edge1/323636300039004C"
INTERVAL = {"name": "Intervalle de mesure", "dataType": "Integer", "value": 300}
ENABLED = {"name": "Mesure activée", "dataType": "Boolean", "value": True}
T0 = 1_767_225_600.0


def dcmd(*metrics: dict[str, Any]) -> bytes:
    return json.dumps({"metrics": list(metrics)}).encode()


# ------------------------------------------------------------------ DCMD, pure


def test_the_issues_dcmd_is_read() -> None:
    assert parse_dcmd(TOPIC, dcmd(INTERVAL, ENABLED), SCHEME) == CommandRequest(
        "323636300039004C", 300, enabled=True
    )
    assert parse_dcmd(TOPIC, dcmd(ENABLED), SCHEME) == CommandRequest(
        "323636300039004C", None, enabled=True
    )
    # the same JSON as DDATA: a timestamp is allowed, raw UTF-8 or \\u escapes alike
    raw = '{"metrics":[{"name":"Mesure activ\\u00e9e","dataType":"Boolean","value":false,'
    raw += '"timestamp":1}]}'
    assert parse_dcmd(TOPIC, raw.encode(), SCHEME).enabled is False


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("root/proj/DCMD/other/ABCD", dcmd(INTERVAL), "not a DCMD topic of this edge node"),
        ("root/proj/DDATA/edge1/ABCD", dcmd(INTERVAL), "not a DCMD topic"),
        ("root/other/DCMD/edge1/ABCD", dcmd(INTERVAL), "not a DCMD topic"),
        ("root/proj/DCMD/edge1/AB/CD", dcmd(INTERVAL), "not a DCMD topic"),
        ("root/proj/DCMD/edge1/+", dcmd(INTERVAL), "contains '+'"),
        ("root/proj/DCMD/edge1/#", dcmd(INTERVAL), "contains '#'"),
        ("root/proj/DCMD/edge1/", dcmd(INTERVAL), "device id is empty"),
        (TOPIC, b"x" * (MAX_PAYLOAD_BYTES + 1), "payload of 4097 bytes exceeds 4096"),
        (TOPIC, b"\xff\xfe", "payload is not JSON"),
        (TOPIC, b"{", "payload is not JSON"),
        (TOPIC, b"[" * 2000 + b"]" * 2000, "not JSON"),  # nested too deep: RecursionError
        (TOPIC, b"[]", 'payload has no "metrics" list'),
        (TOPIC, b'{"metrics": []}', 'payload has no "metrics" list'),
        (TOPIC, b'{"metrics": [1]}', "a metric is not a JSON object"),
        (TOPIC, b'{"metrics": [{"value": 1}]}', "a metric has no name"),
        (TOPIC, dcmd({**INTERVAL, "name": "Tension/Phase 1"}), "unknown metric 'Tension/Phase 1'"),
        (TOPIC, dcmd({**INTERVAL, "dataType": "Long"}), "must have dataType Integer"),
        (TOPIC, dcmd({**INTERVAL, "value": "300"}), "must be a whole number"),
        (TOPIC, dcmd({**INTERVAL, "value": 300.5}), "must be a whole number"),
        (TOPIC, dcmd({**INTERVAL, "value": True}), "must be a whole number"),
        (TOPIC, dcmd({**ENABLED, "value": 1}), "must be true or false"),
        (TOPIC, dcmd({k: v for k, v in INTERVAL.items() if k != "value"}), "has no value"),
        (TOPIC, dcmd(INTERVAL, INTERVAL), "given twice"),
    ],
)
def test_bad_dcmds_are_refused_with_a_reason(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(DcmdError, match=reason.replace("+", r"\+")) as caught:
        parse_dcmd(topic, payload, SCHEME)
    if topic == TOPIC:
        assert caught.value.device_id == "323636300039004C"


# ------------------------------------------------------------------ DBIRTH / DDATA

CONFIG = Record("AB", "energy_config", {"interval_s": 300, "enabled": False}, 70, 60, T0, "1-0")
OFF_BIRTH = (
    '{"metrics":[{"name":"Énergie apparente/Phase 1","dataType":"Long"},'
    '{"name":"Énergie apparente/Phase 2","dataType":"Long"},'
    '{"name":"Énergie apparente/Phase 3","dataType":"Long"},'
    '{"name":"Énergie active/Phase 1","dataType":"Long"},'
    '{"name":"Énergie active/Phase 2","dataType":"Long"},'
    '{"name":"Énergie active/Phase 3","dataType":"Long"},'
    '{"name":"Intensité/Phase 1","dataType":"Integer"},'
    '{"name":"Intensité/Phase 2","dataType":"Integer"},'
    '{"name":"Intensité/Phase 3","dataType":"Integer"},'
    '{"name":"Tension/Phase 1","dataType":"Short"},'
    '{"name":"Tension/Phase 2","dataType":"Short"},'
    '{"name":"Tension/Phase 3","dataType":"Short"},'
    '{"name":"Force du signal radio DASH7","dataType":"Short"},'
    '{"name":"Bouton pressé","dataType":"Boolean"},'
    '{"name":"État de la liaison Modbus - DASH7","dataType":"Boolean"}]}'
).encode()


def test_with_the_downlink_off_nothing_changes_byte_for_byte(vectors) -> None:
    assert dbirth_payload() == dbirth_payload(downlink=False) == OFF_BIRTH
    assert ddata_payload(CONFIG) is None
    # the downlink changes no reading's DDATA (test_payloads checks them against the vectors)
    checked = 0
    for case in vectors:
        if not case.get("alp_hex"):
            continue
        record = decode_alp("1-0", bytes.fromhex(case["alp_hex"]), T0)
        if isinstance(record, Record) and record.kind != "energy_config":
            assert ddata_payload(record, downlink=True) == ddata_payload(record)
            checked += 1
    assert checked >= 3


def test_with_the_downlink_on_metrics_16_and_17() -> None:
    birth = json.loads(dbirth_payload(downlink=True))["metrics"]
    assert len(birth) == 17
    assert birth[:15] == json.loads(OFF_BIRTH)["metrics"]
    assert birth[15:] == [
        {"name": "Intervalle de mesure", "dataType": "Integer"},
        {"name": "Mesure activée", "dataType": "Boolean"},
    ]
    assert (
        ddata_payload(CONFIG, downlink=True)
        == (
            '{"metrics":[{"name":"Intervalle de mesure","dataType":"Integer",'
            '"timestamp":1767225600000,"value":300},'
            '{"name":"Mesure activée","dataType":"Boolean",'
            '"timestamp":1767225600000,"value":false}]}'
        ).encode()
    )
    assert len(METRICS) == 15


# ------------------------------------------------------------------ through the broker


def _register(redis_client, keys: StreamKeys, device: str, interval_s: float = 600.0) -> None:
    entry = DeviceEntry(T0, T0, 1, 70, interval_s, enabled=True)
    redis_client.hset(keys.devices, device, entry.to_bytes())


def _publish(broker, topic: str, payload: bytes) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.mark.integration
def test_dcmds_become_commands_and_config_files_ddata(
    broker, topic_root, subscriber, start_publisher, records_stream, redis_client, clear_retained
) -> None:
    keys = records_stream.keys
    store = CommandStore(redis_client, keys)
    device = "323636300039004C"
    _register(redis_client, keys, device)
    live = subscriber(broker.host, broker.port, f"{topic_root}/proj/+/edge1/#")
    pub = start_publisher(broker.host, broker.port, downlink="true", downlink_timeout_s=90)
    config = Record(
        device, "energy_config", {"interval_s": 600, "enabled": True}, 70, 60, T0, "1-0"
    )
    records_stream.add(config)
    got = live.take(2)
    assert [m.topic.split("/")[2] for m in got] == ["DBIRTH", "DDATA"]
    assert len(json.loads(got[0].payload)["metrics"]) == 17
    assert [m["name"] for m in json.loads(got[1].payload)["metrics"]] == [
        "Intervalle de mesure",
        "Mesure activée",
    ]
    command_topic = f"{topic_root}/proj/DCMD/edge1/{device}"
    assert wait_until(lambda: pub.metric("gateway_mqtt_connected") == 1)
    time.sleep(0.3)  # the subscription is made right after the CONNACK
    _publish(broker, command_topic, dcmd(INTERVAL, ENABLED))
    _publish(broker, command_topic, b'{"metrics": [{"name": "Autre", "value": 1}]}')
    _publish(broker, f"{topic_root}/proj/DCMD/edge1/FFFF", dcmd(INTERVAL))
    _publish(broker, command_topic, dcmd({**INTERVAL, "value": 5}))
    assert wait_until(lambda: store.listing(10)[0] == 4)
    _, commands = store.listing(10, newest_first=False)
    assert [(c.state, c.source) for c in commands] == [
        (CommandState.QUEUED, "mqtt"),
        (CommandState.REJECTED, "mqtt"),
        (CommandState.REJECTED, "mqtt"),
        (CommandState.REJECTED, "mqtt"),
    ]
    assert (commands[0].device_id, commands[0].values, commands[0].timeout_s) == (
        device,
        (300, True),
        90,
    )
    assert [c.reason for c in commands[1:]] == [
        "unknown metric 'Autre'",
        "device FFFF is not in the registry",
        "interval 5 s is outside 10 ... 86400 s",
    ]
    assert redis_client.xlen(keys.commands) == 1  # only the accepted one reaches ingest
    assert pub.metric("gateway_dcmd_messages_total", {"result": "accepted"}) == 1
    assert pub.metric("gateway_dcmd_messages_total", {"result": "rejected"}) == 3
    # nothing the DCMDs said was published back: no ad-hoc topic
    assert [m.topic.split("/")[2] for m in live.quiet()] == ["DCMD"] * 4


@pytest.mark.integration
def test_with_the_downlink_off_no_dcmd_is_taken_and_config_files_stay_unpublished(
    broker, topic_root, subscriber, start_publisher, records_stream, redis_client, clear_retained
) -> None:
    keys = records_stream.keys
    device = "ABCD"
    _register(redis_client, keys, device)
    live = subscriber(broker.host, broker.port, f"{topic_root}/proj/+/edge1/#")
    pub = start_publisher(broker.host, broker.port)
    records_stream.add(
        Record(device, "energy_config", {"interval_s": 600, "enabled": True}, 70, 60, T0, "1-0")
    )
    records_stream.add(Record(device, "button", {"buttons_state": 1}, 70, 60, T0 + 1, "2-0"))
    got = live.take(2)
    assert [(m.topic.split("/")[2], m.payload) for m in got] == [
        ("DBIRTH", OFF_BIRTH),
        (
            "DDATA",
            ddata_payload(Record(device, "button", {"buttons_state": 1}, 70, 60, T0 + 1, "2-0")),
        ),
    ]
    assert wait_until(lambda: pub.metric("gateway_mqtt_connected") == 1)
    _publish(broker, f"{topic_root}/proj/DCMD/edge1/{device}", dcmd(INTERVAL))
    time.sleep(1.0)
    assert CommandStore(redis_client, keys).listing(10)[0] == 0
