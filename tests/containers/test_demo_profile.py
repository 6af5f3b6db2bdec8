"""`docker compose --profile demo up` as a user runs it, then the faults a container meets:
its main process killed, Redis restarted, the whole project taken down and up again.

The scenarios run in order on one project: (a) up with two decoders, healthy, readings at the
demo broker; (b) kill -9 of ingest, one decoder and the publisher, each brought back by its
restart policy, and then nothing left pending and one record per frame; (c) Redis restarted,
then `down` and `up` with the volume kept: the frames archive and the device registry remain.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from compose_project import DEMO_GATEWAY, HERE, Project, report

from gateway_common.devices import DeviceEntry
from gateway_common.entries import decode_dead_letter, decode_record
from gateway_common.streams import DECODER_GROUP, ENTRY_FIELD, PUBLISHER_GROUP, StreamKeys
from gateway_devkit.polling import wait_until

pytestmark = pytest.mark.container

KEYS = StreamKeys("demo")
TOPIC = "mqtts/demo-project/+/demo-edge/+"
HEALTHY_WITHIN_S = 90


@pytest.fixture(scope="module")
def demo(export: Path, image: str) -> Iterator[Project]:
    project = Project(export, profile="demo", overrides=(str(HERE / "compose.test.yml"),))
    try:
        yield project
    finally:
        project.down()


def pending(client: redis.Redis, stream: str, group: str) -> tuple[int, int]:
    """(pending, lag) of `group` on `stream`."""
    for info in client.xinfo_groups(stream):
        if info["name"].decode() == group:
            return int(info["pending"]), int(info["lag"] or 0)
    raise AssertionError(f"no group {group} on {stream}")


def test_a_demo_profile_healthy_with_two_decoders_and_readings_at_the_broker(demo: Project) -> None:
    started = time.monotonic()
    demo.compose("up", "-d", "--scale", "decoder-demo=2")
    left_s = HEALTHY_WITHIN_S - (time.monotonic() - started)  # 90 s counted from `up`
    demo.wait_healthy(DEMO_GATEWAY, left_s, replicas={"decoder-demo": 2})
    since_up = time.monotonic() - started
    report(f"demo profile: every gateway service healthy {since_up:.0f} s after `up -d` began")
    messages = demo.subscribe("mosquitto", TOPIC, count=8, timeout_s=60)
    assert len(messages) == 8, demo.logs("publisher-demo")[-3000:]
    first_of_device: dict[str, str] = {}
    for retained, topic, payload in messages:
        kind, device = topic.split("/")[2], topic.split("/")[4]
        first_of_device.setdefault(device, kind)
        metrics = json.loads(payload)["metrics"]
        if kind == "DBIRTH":
            assert retained
            assert len(metrics) == 15
        else:
            assert kind == "DDATA"
            assert all("timestamp" in m and "value" in m for m in metrics)
    # Every device the subscriber met was provisioned before any of its readings.
    assert set(first_of_device.values()) == {"DBIRTH"}, messages
    assert any(topic.split("/")[2] == "DDATA" for _, topic, _ in messages)


def test_a2_the_demo_console_shows_the_simulated_sensors(demo: Project) -> None:
    address = demo.compose("port", "console-demo", "8080").stdout.strip()
    assert address.startswith("127.0.0.1:"), address
    started = time.monotonic()
    page = ""
    while time.monotonic() - started < 30 and page.count("data-device=") < 3:
        with urllib.request.urlopen(f"http://{address}/devices", timeout=5) as answer:
            page = answer.read().decode()
        time.sleep(1)
    assert page.count("data-device=") == 3, page[-3000:]
    assert "console_listening" in demo.logs("console-demo")


def test_b_killed_main_processes_come_back_and_nothing_is_lost(demo: Project) -> None:
    victims = [
        demo.ids("ingest-demo")[0],
        demo.ids("decoder-demo")[0],
        demo.ids("publisher-demo")[0],
    ]
    before = {c: demo.inspect(c)["RestartCount"] for c in victims}
    for container in victims:
        os.kill(demo.inspect(container)["State"]["Pid"], signal.SIGKILL)  # from the host: a crash
    assert wait_until(
        lambda: all(demo.inspect(c)["RestartCount"] > before[c] for c in victims), 60, 1
    ), "each killed container is restarted by its restart policy"
    demo.wait_healthy(DEMO_GATEWAY, HEALTHY_WITHIN_S, replicas={"decoder-demo": 2})
    client = demo.redis()
    records_before = client.xlen(KEYS.records)
    assert wait_until(lambda: client.xlen(KEYS.records) > records_before, 60, 1), "no new records"

    demo.compose("stop", "sim")  # no new frames: the pipeline must drain to nothing pending
    assert wait_until(
        lambda: (
            pending(client, KEYS.frames, DECODER_GROUP) == (0, 0)
            and pending(client, KEYS.records, PUBLISHER_GROUP) == (0, 0)
        ),
        60,
        1,
    ), "frames or records still pending"
    frame_ids = {entry_id.decode() for entry_id, _ in client.xrange(KEYS.frames)}
    per_frame: dict[str, int] = {}
    for _, fields in client.xrange(KEYS.records):
        record = decode_record(fields[ENTRY_FIELD])
        per_frame[record.frame_id] = per_frame.get(record.frame_id, 0) + 1
    dead = [decode_dead_letter(fields[ENTRY_FIELD]) for _, fields in client.xrange(KEYS.dead)]
    assert not dead, [(d.stage, d.reason) for d in dead]
    assert set(per_frame) == frame_ids
    assert set(per_frame.values()) == {1}, "a frame decoded twice"
    report(
        f"demo profile after kill -9 of ingest, a decoder and the publisher: {len(frame_ids)}"
        " frames, one record each, 0 dead letters"
    )


def test_c_redis_restart_and_down_up_keep_frames_and_devices(demo: Project) -> None:
    client = demo.redis()
    frames = {entry_id for entry_id, _ in client.xrange(KEYS.frames)}
    devices = {
        k: DeviceEntry.from_bytes(v).first_seen for k, v in client.hgetall(KEYS.devices).items()
    }
    assert frames
    assert devices

    demo.compose("restart", "redis")
    demo.wait_healthy(("redis",), 60)
    client = demo.redis()
    assert {entry_id for entry_id, _ in client.xrange(KEYS.frames)} == frames
    assert set(client.hgetall(KEYS.devices)) == set(devices)

    demo.compose("down", "--timeout", "20")  # the volume stays
    demo.compose("up", "-d", "--scale", "decoder-demo=2")
    demo.wait_healthy(DEMO_GATEWAY, HEALTHY_WITHIN_S, replicas={"decoder-demo": 2})
    client = demo.redis()
    assert frames <= {entry_id for entry_id, _ in client.xrange(KEYS.frames)}
    after = {
        k: DeviceEntry.from_bytes(v).first_seen for k, v in client.hgetall(KEYS.devices).items()
    }
    assert {k: after[k] for k in devices} == devices, (
        "the registry forgot when devices were first seen"
    )
    time.sleep(5)  # a few seconds of steady running before memory is read
    memory = demo.memory_mb()
    report(
        "demo profile memory (docker stats): "
        + ", ".join(f"{n} {mb:.1f} MB" for n, mb in sorted(memory.items()))
    )
