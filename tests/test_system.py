"""The whole gateway as processes: modem bytes on a pty -> ingest -> decoder -> publisher -> the
real Mosquitto, asserting the exact MQTT messages a subscriber receives."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

import pytest
import redis

from gateway_common.entries import decode_dead_letter
from gateway_common.streams import ENTRY_FIELD, StreamKeys
from gateway_dash7 import (
    AddressType,
    ButtonFile,
    D7Status,
    EnergyConfigFile,
    EnergyFile,
    MessageType,
    encode_frame,
    encode_unsolicited,
)
from gateway_dash7 import device_id as device_id_of

from .conftest import EDGE_NODE_ID, PROJECT_ID

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway_devkit.modem_line import ModemLine
    from gateway_devkit.mqtt_watch import MqttWatch, Received
    from gateway_devkit.processes import Supervisor

pytestmark = [pytest.mark.integration, pytest.mark.system]

PHASES = (1, 2, 3)
#: protocol.md section 4, written out independently of the publisher's code.
BIRTH_METRICS = (
    [(f"Énergie apparente/Phase {p}", "Long") for p in PHASES]
    + [(f"Énergie active/Phase {p}", "Long") for p in PHASES]
    + [(f"Intensité/Phase {p}", "Integer") for p in PHASES]
    + [(f"Tension/Phase {p}", "Short") for p in PHASES]
    + [
        ("Force du signal radio DASH7", "Short"),
        ("Bouton pressé", "Boolean"),
        ("État de la liaison Modbus - DASH7", "Boolean"),
    ]
)


def start_gateway(gateway: Supervisor, line: ModemLine) -> None:
    gateway.start_service("decoder", "gateway-decoder", GATEWAY_CONSUMER_NAME="decoder-1")
    gateway.start_service("publisher", "gateway-publisher", GATEWAY_CONSUMER_NAME="publisher-1")
    gateway.start_service("ingest", "gateway-ingest", GATEWAY_SERIAL_PORT=line.path)
    gateway.wait_log("ingest", "serial_opened")


def write_in_random_chunks(line: ModemLine, data: bytes, rng: random.Random) -> None:
    pos = 0
    while pos < len(data):
        size = rng.choice((1, 2, 3, 7, 64, 300))
        line.write(data[pos : pos + size])
        pos += size
        if rng.random() < 0.3:
            time.sleep(0.002)


def ddata_of(messages: list[Received]) -> list[Received]:
    return [m for m in messages if "/DDATA/" in m.topic]


def topic(topic_root: str, kind: str, device_id: str) -> str:
    return f"{topic_root}/{PROJECT_ID}/{kind}/{EDGE_NODE_ID}/{device_id}"


def assert_births_precede_data(
    messages: list[Received], topic_root: str, devices: set[str]
) -> None:
    for device in devices:
        topics = [m.topic for m in messages]
        birth = topics.index(topic(topic_root, "DBIRTH", device))
        first_data = topics.index(topic(topic_root, "DDATA", device))
        assert birth < first_data, device
        payload = messages[birth].json()
        assert [(m["name"], m["dataType"]) for m in payload["metrics"]] == BIRTH_METRICS


def assert_retained_births(
    subscriber: Callable[..., MqttWatch], broker: Any, topic_root: str, devices: set[str]
) -> None:
    late = subscriber(broker.host, broker.port, f"{topic_root}/+/DBIRTH/#")
    got = late.wait_for(lambda ms: len(ms) >= len(devices), timeout_s=10)
    assert {m.topic for m in got if m.retain} == {topic(topic_root, "DBIRTH", d) for d in devices}


def test_every_vector_yields_exactly_the_expected_messages(
    gateway: Supervisor,
    modem_line: ModemLine,
    watch: MqttWatch,
    vectors: list[dict[str, Any]],
    topic_root: str,
    stream_prefix: str,
    redis_client: redis.Redis,
    broker: Any,
    subscriber: Callable[..., MqttWatch],
) -> None:
    rng = random.Random(7)
    start_gateway(gateway, modem_line)
    expected: list[tuple[str, list[dict[str, Any]]]] = []
    stream = b""
    for case in vectors:
        stream += bytes(rng.randrange(256) for _ in range(rng.randrange(0, 12)))  # line noise
        stream += bytes.fromhex(case["frame_hex"])
        exp = case["expect"]
        if exp.get("publish") == "DDATA":
            expected += [(exp["device_id"], exp["metrics"])] * exp.get("count", 1)
    written_at = time.time()
    write_in_random_chunks(modem_line, stream, rng)

    messages = watch.wait_for(lambda ms: len(ddata_of(ms)) >= len(expected), timeout_s=30)
    time.sleep(0.5)  # anything extra would arrive now
    messages = watch.wait_for(lambda _ms: True, timeout_s=0)
    gateway.check_alive()
    data = ddata_of(messages)
    assert len(data) == len(expected), gateway.logs()
    for message, (device_id, metrics) in zip(data, expected, strict=True):
        assert message.topic == topic(topic_root, "DDATA", device_id)
        assert not message.retain
        got = message.json()["metrics"]
        assert [{k: m[k] for k in ("name", "dataType", "value")} for m in got] == metrics
        stamps = {m["timestamp"] for m in got}
        assert len(stamps) == 1
        (stamp,) = stamps
        assert isinstance(stamp, int)
        assert written_at * 1000 - 1 <= stamp <= message.at * 1000 + 1

    devices = {device for device, _ in expected}
    assert_births_precede_data(messages, topic_root, devices)
    assert len([m for m in messages if "/DBIRTH/" in m.topic]) == len(devices)
    assert_retained_births(subscriber, broker, topic_root, devices)

    keys = StreamKeys(stream_prefix)
    reasons = sorted(
        decode_dead_letter(fields[ENTRY_FIELD]).reason
        for _id, fields in redis_client.xrange(keys.dead)
    )
    assert reasons == sorted(
        c["expect"]["dead_letter"] for c in vectors if "dead_letter" in c["expect"]
    )
    assert redis_client.hlen(keys.devices) == len(devices)


# ---------------------------------------------------------------- frames never seen before


def energy_metrics(e: EnergyFile, link_budget: int) -> list[dict[str, Any]]:
    if not e.measurement_valid:
        return [
            {"name": "Force du signal radio DASH7", "dataType": "Short", "value": link_budget},
            {"name": "État de la liaison Modbus - DASH7", "dataType": "Boolean", "value": False},
        ]
    values = [
        *e.apparent_energy_vah,
        *e.active_energy_wh,
        *e.current_ma,
        *e.voltage_v,
        link_budget,
        True,
    ]
    names = [*BIRTH_METRICS[:13], BIRTH_METRICS[14]]
    return [{"name": n, "dataType": t, "value": v} for (n, t), v in zip(names, values, strict=True)]


def button_metrics(state: int, link_budget: int) -> list[dict[str, Any]]:
    return [
        {"name": "Bouton pressé", "dataType": "Boolean", "value": bool(state & 1)},
        {"name": "Force du signal radio DASH7", "dataType": "Short", "value": link_budget},
    ]


def random_message(rng: random.Random) -> tuple[bytes, str, list[dict[str, Any]] | None]:
    if rng.random() < 0.8:
        address, kind = bytes(rng.randrange(256) for _ in range(8)), AddressType.UID
    else:
        address, kind = bytes(rng.randrange(256) for _ in range(2)), AddressType.VID
    link_budget = rng.randrange(256)
    status = D7Status(
        address=address,
        address_type=kind,
        rx_level=rng.randrange(256),
        link_budget=link_budget,
        sequence=rng.randrange(256),
    )
    roll = rng.random()
    if roll < 0.6:
        energy = EnergyFile(
            tuple(rng.randrange(-(2**63), 2**63) for _ in PHASES),  # type: ignore[arg-type]
            tuple(rng.randrange(0, 2**40) for _ in PHASES),  # type: ignore[arg-type]
            tuple(rng.randrange(-(2**31), 2**31) for _ in PHASES),  # type: ignore[arg-type]
            tuple(rng.randrange(-(2**15), 2**15) for _ in PHASES),  # type: ignore[arg-type]
            measurement_valid=rng.random() < 0.85,
        )
        alp = encode_unsolicited(52, energy.encode(), status)
        return alp, device_id_of(address), energy_metrics(energy, link_budget)
    if roll < 0.9:
        state = rng.randrange(8)
        alp = encode_unsolicited(51, ButtonFile(rng.randrange(1, 4), 1, state).encode(), status)
        return alp, device_id_of(address), button_metrics(state, link_budget)
    alp = encode_unsolicited(62, EnergyConfigFile(rng.randrange(60, 3600)).encode(), status)
    return alp, device_id_of(address), None


def corrupted(frame: bytes, rng: random.Random) -> bytes:
    """A copy with one bit flipped in the CRC or the payload: the CRC must reject it."""
    pos = rng.randrange(5, len(frame))
    return frame[:pos] + bytes((frame[pos] ^ (1 << rng.randrange(8)),)) + frame[pos + 1 :]


def test_unseen_frames_in_noise_and_corrupted_copies(
    gateway: Supervisor,
    modem_line: ModemLine,
    watch: MqttWatch,
    topic_root: str,
) -> None:
    rng = random.Random(20261127)
    start_gateway(gateway, modem_line)
    expected: list[tuple[str, list[dict[str, Any]]]] = []
    stream = encode_frame(1, MessageType.REBOOTED, b"\x00")
    for counter in range(2, 122):
        alp, device, metrics = random_message(rng)
        frame = encode_frame(counter % 256, MessageType.ALP_DATA, alp)
        if rng.random() < 0.3:
            stream += corrupted(frame, rng)
        stream += bytes(rng.randrange(256) for _ in range(rng.randrange(0, 20)))
        if rng.random() < 0.1:
            stream += b"\xc0\x00"  # a false sync in the noise
        stream += frame
        if metrics is not None:
            expected.append((device, metrics))
    write_in_random_chunks(modem_line, stream, rng)

    messages = watch.wait_for(lambda ms: len(ddata_of(ms)) >= len(expected), timeout_s=30)
    time.sleep(0.5)
    messages = watch.wait_for(lambda _ms: True, timeout_s=0)
    gateway.check_alive()
    data = ddata_of(messages)
    assert len(data) == len(expected), gateway.logs()
    for message, (device_id, metrics) in zip(data, expected, strict=True):
        assert message.topic == topic(topic_root, "DDATA", device_id)
        got = message.json()["metrics"]
        assert [{k: m[k] for k in ("name", "dataType", "value")} for m in got] == metrics
    assert_births_precede_data(messages, topic_root, {d for d, _ in expected})
