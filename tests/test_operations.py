"""What an operator sees of a running gateway (issue 6, "Done when"): the three services as
processes with GATEWAY_METRICS_PORT set, frames through a pty, then /metrics and /healthz,
`gatewayctl status`, the dead letter of an unknown file requeued, a time range replayed and
republished with its original timestamps, followed by `gatewayctl tail`, and the services'
`summary` log lines."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import TYPE_CHECKING, Any

import pytest
import redis

from gateway_common.entries import decode_dead_letter, decode_frame
from gateway_common.streams import ENTRY_FIELD, StreamKeys
from gateway_dash7 import (
    ButtonFile,
    D7Status,
    EnergyConfigFile,
    EnergyFile,
    MessageType,
    encode_frame,
    encode_unsolicited,
)
from gateway_devkit.polling import wait_until
from gateway_devkit.processes import BIN
from gateway_devkit.scrape import http_get, scrape
from gateway_devkit.servers import free_port

from .ops_helpers import gatewayctl

if TYPE_CHECKING:
    from gateway_devkit.modem_line import ModemLine
    from gateway_devkit.mqtt_watch import MqttWatch, Received
    from gateway_devkit.processes import Supervisor

pytestmark = [pytest.mark.integration, pytest.mark.system]

A = bytes.fromhex("00000000DEADBEEF")
B = bytes.fromhex("0102030405060708")
A_ID, B_ID = "DEADBEEF", "102030405060708"

#: Every metric issue 6 names, as sample names, per service.
REQUIRED = {
    "ingest": [
        "gateway_frames_received_total",
        "gateway_serial_errors_total",
        "gateway_serial_connected",
        "gateway_ingest_buffered_frames",
    ],
    "decoder": [
        "gateway_frames_decoded_total",
        "gateway_decode_seconds_count",
        "gateway_decode_seconds_bucket",
        "gateway_dead_letters_total",
    ],
    "publisher": [
        "gateway_records_published_total",
        "gateway_mqtt_connected",
        "gateway_publish_latency_seconds_count",
        "gateway_backlog_records",
        "gateway_device_stale",
    ],
}


def frames() -> list[bytes]:
    energy = EnergyFile((10, 20, 30), (40, 50, 60), (700, 800, 900), (230, 231, 229))
    alps = [
        encode_unsolicited(52, energy.encode(), D7Status(A, link_budget=71)),
        encode_unsolicited(51, ButtonFile(1, 1, 1).encode(), D7Status(B, link_budget=65)),
        encode_unsolicited(64, b"\x01\x02\x03\x04", D7Status(A)),  # unknown file
        encode_unsolicited(62, EnergyConfigFile(60).encode(), D7Status(A)),
        encode_unsolicited(52, energy.encode(), D7Status(A, link_budget=72)),
    ]
    return [encode_frame(i + 1, MessageType.ALP_DATA, alp) for i, alp in enumerate(alps)]


def ddata(messages: list[Received]) -> list[Received]:
    return [m for m in messages if "/DDATA/" in m.topic]


def values(port: int, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in scrape(port).items() if n == name}


def test_an_operator_sees_counts_requeues_and_replays(
    gateway: Supervisor,
    modem_line: ModemLine,
    watch: MqttWatch,
    redis_client: redis.Redis,
    stream_prefix: str,
    tmp_path: Any,
) -> None:
    keys = StreamKeys(stream_prefix)
    ctl_env = {k: gateway.env[k] for k in ("GATEWAY_REDIS_URL", "GATEWAY_STREAM_PREFIX")}
    ports = {name: free_port() for name in REQUIRED}
    for name, command, extra in (
        ("decoder", "gateway-decoder", {"GATEWAY_CONSUMER_NAME": "decoder-1"}),
        ("publisher", "gateway-publisher", {"GATEWAY_BACKLOG_INTERVAL_MS": "200"}),
        ("ingest", "gateway-ingest", {"GATEWAY_SERIAL_PORT": modem_line.path}),
    ):
        gateway.start_service(
            name,
            command,
            GATEWAY_METRICS_PORT=str(ports[name]),
            GATEWAY_HEALTH_FILE=str(tmp_path / f"{name}.health"),
            GATEWAY_LOG_SUMMARY_INTERVAL_S="1",
            **extra,
        )
    assert wait_until(lambda: "serial_opened" in gateway.current("ingest").log(), 15), (
        gateway.logs()
    )

    # ---- frames through the serial line, one of them corrupted on the way
    good = frames()
    corrupted = bytearray(good[1])
    corrupted[-3] ^= 0x10
    since = time.time()
    modem_line.write(bytes(corrupted) + b"".join(good))
    messages = watch.wait_for(lambda ms: len(ddata(ms)) >= 3, timeout_s=20)
    first_three = ddata(messages)
    assert len(first_three) == 3, gateway.logs()
    until = time.time()
    gateway.check_alive()

    # ---- metrics and health of every service
    for name, port in ports.items():
        assert wait_until(lambda port=port: http_get(port, "/healthz") == (200, "ok\n"), 10), (
            name,
            http_get(port, "/healthz"),
        )

        def missing(name: str = name, port: int = port) -> list[str]:
            names = {sample_name for sample_name, _labels in scrape(port)}
            return [n for n in REQUIRED[name] if n not in names]

        assert wait_until(lambda: not missing(), 5), (name, missing())
    ingest, decoder, publisher = ports["ingest"], ports["decoder"], ports["publisher"]
    assert values(ingest, "gateway_frames_received_total") == {(): 5}
    assert values(ingest, "gateway_serial_errors_total")[(("kind", "crc"),)] == 1
    assert values(ingest, "gateway_serial_connected") == {(): 1}
    assert values(ingest, "gateway_ingest_buffered_frames") == {(): 0}
    assert values(decoder, "gateway_frames_decoded_total") == {
        (("result", "record"),): 4,
        (("result", "dead"),): 1,
    }
    assert values(decoder, "gateway_decode_seconds_count") == {(): 5}
    assert values(decoder, "gateway_dead_letters_total") == {(("reason", "unknown file id 64"),): 1}
    assert values(publisher, "gateway_records_published_total") == {(): 3}
    assert values(publisher, "gateway_mqtt_connected") == {(): 1}
    assert values(publisher, "gateway_publish_latency_seconds_count") == {(): 3}
    assert wait_until(lambda: values(publisher, "gateway_backlog_records") == {(): 0}, 5)
    assert wait_until(
        lambda: (
            values(publisher, "gateway_device_stale")
            == {(("device_id", A_ID),): 0, (("device_id", B_ID),): 0}
        ),
        5,
    )

    # ---- status: the dead letter of the unknown file is visible
    status = gatewayctl(ctl_env, "status", "--json")
    assert status.code == 0, status.err
    body = status.json()
    assert body["streams"]["dead"] == {"length": 1}
    assert body["streams"]["frames"]["length"] == 5
    assert body["streams"]["frames"]["pending"] == 0
    assert body["devices"] == 2
    assert body["stale_devices"] == 0
    devices = {
        d["device_id"]: d for d in gatewayctl(ctl_env, "devices", "--json").json()["devices"]
    }
    assert devices[A_ID]["interval_s"] == 60  # learnt from its EnergyConfigFile
    assert devices[A_ID]["last_link_budget"] == 72
    assert devices[A_ID]["stale"] is False

    (letter,) = gatewayctl(ctl_env, "dead", "list", "--json").json()["letters"]
    assert letter["reason"] == "unknown file id 64"
    assert letter["stage"] == "decoder"
    shown = gatewayctl(ctl_env, "dead", "show", letter["id"], "--json").json()
    original_alp = bytes.fromhex(shown["raw_hex"])

    # ---- requeue it: back on the frames stream, decoded again (and refused again: same decoder)
    requeued = gatewayctl(ctl_env, "dead", "requeue", letter["id"], "--json")
    assert requeued.code == 0, requeued.err
    (moved,) = requeued.json()["requeued"]
    assert moved["stream"] == keys.frames
    frame = decode_frame(
        redis_client.xrange(keys.frames, moved["new_id"], moved["new_id"])[0][1][ENTRY_FIELD]
    )
    assert frame.alp == original_alp
    assert frame.received_at == letter["received_at"]

    def dead_again() -> list[Any]:
        return [
            (i.decode(), decode_dead_letter(f[ENTRY_FIELD]))
            for i, f in redis_client.xrange(keys.dead)
        ]

    assert wait_until(lambda: len(dead_again()) == 1 and dead_again()[0][0] != letter["id"], 10)
    ((_new_dead_id, new_letter),) = dead_again()
    assert new_letter.source_id == moved["new_id"]
    assert new_letter.raw == original_alp

    # ---- replay the time range while `gatewayctl tail` follows the records
    tail = subprocess.Popen(
        [str(BIN / "gatewayctl"), "tail", "--json", "--count", "3"],
        env={**os.environ, **ctl_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stderr is not None
        assert tail.stderr.readline().startswith("following ")
        replay = gatewayctl(
            ctl_env, "replay", "--since", str(since), "--until", str(until), "--json"
        )
        assert replay.code == 0, replay.err
        report = replay.json()
        assert report["replayed"] == 4  # three readings and the configuration file
        assert [u["reason"] for u in report["undecodable"]] == ["unknown file id 64"]
        tail_out, _ = tail.communicate(timeout=15)
    finally:
        tail.kill()
    tailed = [json.loads(line) for line in tail_out.splitlines()]
    assert [t["device_id"] for t in tailed] == [A_ID, B_ID, A_ID]

    messages = watch.wait_for(lambda ms: len(ddata(ms)) >= 6, timeout_s=20)
    republished = ddata(messages)[3:]
    assert [(m.topic, m.payload) for m in republished] == [
        (m.topic, m.payload) for m in first_three
    ]  # same payloads, hence the original timestamps
    assert wait_until(lambda: values(publisher, "gateway_records_published_total") == {(): 6}, 5)

    # ---- one summary line per interval in every service's log
    def decoded_in_summaries() -> int:
        lines = gateway.current("decoder").log().splitlines()
        summaries = [json.loads(line) for line in lines if '"event": "summary"' in line]
        return sum(s.get("frames_decoded", {}).get("record", 0) for s in summaries)

    assert wait_until(lambda: decoded_in_summaries() == 4, 5), gateway.logs()
    for service in gateway.latest.values():
        assert '"event": "summary"' in service.log(), service.name
    assert gateway.current("ingest").log().count('"event": "frame_received"') >= 5  # debug
    gateway.check_alive()
