"""Redis answering with errors (full, wrong type, unable to persist) never stops the publisher,
and a full Redis still takes the acknowledgements (a private redis-server for the full one)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
import redis

from gateway_common.entries import encode
from gateway_common.streams import ENTRY_FIELD, PUBLISHER_GROUP
from gateway_devkit.disks import aof_on_full_device
from gateway_devkit.polling import wait_until
from gateway_devkit.scrape import http_get, sample
from gateway_devkit.servers import free_port

from .test_integration import T0, button, expected, seen

pytestmark = pytest.mark.integration

FILLER_BYTES = 16 * 1024
PUBLISHER = Path(sys.executable).with_name("gateway-publisher")


def fill_up(client: redis.Redis) -> list[str]:
    """Fill Redis (noeviction) until it refuses writes, then lower the ceiling a little more,
    so that freeing a few bytes (an XACK) does not bring it back under. The filler keys, whose
    deletion frees far more than the publisher's connections and scripts take meanwhile."""
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", client.info("memory")["used_memory"] + 2 * 1024 * 1024)
    filler: list[str] = []
    with pytest.raises(redis.exceptions.OutOfMemoryError):  # noqa: PT012
        for i in range(1000):
            client.set(f"filler:{i}", b"x" * FILLER_BYTES)
            filler.append(f"filler:{i}")
    client.config_set("maxmemory", client.info("memory")["used_memory"] - 256 * 1024)
    return filler


def registry(client: redis.Redis, key: str) -> dict[str, dict[str, object]]:
    return {k.decode(): msgpack.unpackb(v) for k, v in client.hgetall(key).items()}


def test_a_full_redis_still_takes_the_acknowledgements_and_the_registry_catches_up(
    broker,
    topic_root,
    subscriber,
    start_publisher,
    private_records,
    clear_retained,
) -> None:
    stream = private_records
    client, redis_server = stream.client, stream.server
    keys = stream.keys
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    records = [button("M1", T0 + i, i % 2) for i in range(4)]
    for record in records:
        stream.add(record)
    client.xgroup_create(keys.records, PUBLISHER_GROUP, id="0")
    client.xreadgroup(PUBLISHER_GROUP, "earlier-name", {keys.records: ">"}, count=2)
    filler = fill_up(client)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.hset(keys.devices, "probe", b"x")

    pub = start_publisher(broker.host, broker.port, redis_url=redis_server.url)

    # Published, and acknowledged although Redis is full (XACK is not refused for memory).
    want = expected(topic_root, [("M1", None)] + [("M1", r) for r in records])
    assert seen(live.take(len(want))) == want
    assert wait_until(lambda: stream.outstanding() == 0)
    assert pub.metric("gateway_records_published_total") == 4
    time.sleep(1.0)  # a few turns of the loop, registry writes retried and refused
    assert client.hlen(keys.devices) == 0  # the registry write was refused, not the XACK
    assert pub.thread.is_alive()
    assert pub.errors == []

    client.delete(*filler)  # memory freed: the registry catches up by itself
    assert wait_until(lambda: registry(client, keys.devices).get("M1", {}).get("readings") == 4)
    later = button("M1", T0 + 10, 0)
    stream.add(later)
    assert seen(live.take(1)) == expected(topic_root, [("M1", later)])
    assert live.quiet() == []
    assert wait_until(lambda: stream.outstanding() == 0)
    assert wait_until(lambda: registry(client, keys.devices)["M1"]["readings"] == 5)
    assert registry(client, keys.devices)["M1"]["last_seen"] == T0 + 10


def test_an_error_reply_is_waited_out_and_the_setup_done_again(
    broker,
    topic_root,
    subscriber,
    start_publisher,
    records_stream,
    redis_client,
    stream_prefix,
    clear_retained,
) -> None:
    """WRONGTYPE on every read while the records key holds a string; meanwhile an earlier
    consumer name left records pending: once the stream is back they are taken over."""
    stream = records_stream.keys.records
    saved = f"{stream_prefix}:saved"
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    first = button("W1", T0)
    records_stream.add(first)
    pub = start_publisher(broker.host, broker.port)
    assert seen(live.take(2)) == expected(topic_root, [("W1", None), ("W1", first)])
    assert wait_until(lambda: records_stream.outstanding() == 0)

    swap = redis_client.pipeline(transaction=True)
    swap.rename(stream, saved)
    swap.set(stream, "not a stream")
    swap.execute()
    assert wait_until(lambda: pub.metric("gateway_publisher_redis_errors_total") >= 2, 5)
    left = [button("W1", T0 + 1 + i, i % 2) for i in range(2)]
    for record in left:
        redis_client.xadd(saved, {ENTRY_FIELD: encode(record)})
    redis_client.xreadgroup(PUBLISHER_GROUP, "earlier-name", {saved: ">"})
    new = button("W1", T0 + 5)
    redis_client.xadd(saved, {ENTRY_FIELD: encode(new)})
    assert pub.thread.is_alive()
    assert pub.errors == []
    redis_client.rename(saved, stream)  # the stream is back, with its group

    # Same MQTT connection: no new DBIRTH. The taken-over records first, then the new one.
    assert seen(live.take(3)) == expected(topic_root, [("W1", r) for r in [*left, new]])
    assert live.quiet() == []
    assert wait_until(lambda: records_stream.outstanding() == 0)
    assert pub.metric("gateway_records_published_total") == 4


def test_the_mqtt_session_stays_up_while_redis_is_away(
    broker, topic_root, subscriber, start_publisher, private_records
) -> None:
    """Waiting out a Redis outage, the publisher still serves the MQTT link: the broker drops a
    client silent for 1.5 x the keep-alive (7.5 s here), and the outage lasts longer."""
    stream, redis_server = private_records, private_records.server
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    first, later = button("S1", T0), button("S1", T0 + 60, 0)
    stream.add(first)
    pub = start_publisher(broker.host, broker.port, keepalive_s=5, redis_url=redis_server.url)
    assert seen(live.take(2)) == expected(topic_root, [("S1", None), ("S1", first)])
    assert wait_until(lambda: stream.outstanding() == 0)
    redis_server.stop()  # saved (AOF), back on the same port later
    assert wait_until(lambda: pub.metric("gateway_publisher_redis_errors_total") >= 1)
    time.sleep(9)
    redis_server.start()
    stream.add(later)
    # The same connection: no new DBIRTH before the DDATA.
    assert seen(live.take(1)) == expected(topic_root, [("S1", later)])
    assert live.quiet() == []
    assert wait_until(lambda: stream.outstanding() == 0)


def test_a_redis_that_cannot_persist_is_waited_out_without_a_restart(
    broker, topic_root, subscriber, private_records, clear_retained, tmp_path
) -> None:
    """Redis refusing writes with MISCONF (its AOF on a device that is full; appendfsync
    everysec): XREADGROUP and XACK are writes, so nothing moves. The publisher names it
    (health, gauge), never takes the watchdog's way out (a restart changes nothing; its limit
    is 1 s here), and publishes the waiting record once Redis can write its AOF again."""
    stream, redis_server = private_records, private_records.server
    live = subscriber(broker.host, broker.port, f"{topic_root}/#")
    record = button("P1", T0)
    stream.add(record)
    stream.client.bgrewriteaof()  # the record into the AOF's base, safe from the device
    assert wait_until(lambda: not stream.client.info("persistence")["aof_rewrite_in_progress"])
    aof_on_full_device(redis_server)
    port, health_file = free_port(), tmp_path / "health.json"
    env = {
        **os.environ,
        "GATEWAY_REDIS_URL": redis_server.url,
        "GATEWAY_STREAM_PREFIX": stream.keys.prefix,
        "GATEWAY_TOPIC_ROOT": topic_root,
        "GATEWAY_MQTT_HOST": broker.host,
        "GATEWAY_MQTT_PORT": str(broker.port),
        "GATEWAY_MQTT_TLS": "false",
        "GATEWAY_MQTT_CLIENT_ID": f"pub-{topic_root}",
        "GATEWAY_PROJECT_ID": "proj",
        "GATEWAY_EDGE_NODE_ID": "edge1",
        "GATEWAY_METRICS_PORT": str(port),
        "GATEWAY_HEALTH_FILE": str(health_file),
        "GATEWAY_UNHEALTHY_EXIT_S": "1",
        "GATEWAY_BLOCK_MS": "200",
    }
    process = subprocess.Popen([str(PUBLISHER)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        reason = "redis: Redis cannot persist: No space left on device"
        assert wait_until(lambda: reason in http_get(port, "/healthz")[1], 10)
        assert sample(port, "gateway_redis_refusing_writes", reason="persistence") == 1
        time.sleep(3)  # three times the unhealthy limit
        assert process.poll() is None, "the publisher exited while Redis could not persist"

        client = redis.Redis.from_url(redis_server.url)
        client.bgrewriteaof()  # a new AOF file, on the disk: Redis can write again
        client.close()
        assert seen(live.take(2, 20)) == expected(topic_root, [("P1", None), ("P1", record)])
        assert wait_until(lambda: stream.outstanding() == 0, 15)
        assert wait_until(lambda: http_get(port, "/healthz") == (200, "ok\n"), 15)
        assert sample(port, "gateway_redis_refusing_writes", reason="persistence") == 0
    finally:
        process.terminate()
        process.wait(10)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
