"""The decoder as a process: configuration errors, and Redis going away and coming back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from gateway_common.entries import FrameEntry, decode_record, encode
from gateway_dash7 import AddressType, ButtonFile, D7Status, EnergyConfigFile, encode_unsolicited
from gateway_devkit.disks import aof_on_full_device
from gateway_devkit.polling import wait_until
from gateway_devkit.scrape import http_get, sample
from gateway_devkit.servers import free_port

DECODER = Path(sys.executable).with_name("gateway-decoder")


def test_bad_setting_exits_2_naming_the_variable():
    env = {**os.environ, "GATEWAY_CLAIM_IDLE_MS": "abc"}
    result = subprocess.run(
        [str(DECODER)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "GATEWAY_CLAIM_IDLE_MS" in lines[0]


def _frames(client: redis.Redis, count: int) -> None:
    status = D7Status(address=b"\xab\xcd", address_type=AddressType.VID)
    for n in range(count):
        alp = encode_unsolicited(51, ButtonFile(n, 1, 1).encode(), status)
        client.xadd("gw:frames", {b"d": encode(FrameEntry(alp, time.time(), n))})


@pytest.mark.integration
def test_waits_for_redis_and_resumes_after_it_restarts(private_redis, start_decoder):
    # Not started yet; without persistence, so killing it loses all its data.
    redis_server = private_redis(appendfsync=None, start=False)
    decoder = start_decoder(redis_url=redis_server.url, stream_prefix="gw")
    assert wait_until(lambda: decoder.metric("gateway_decoder_redis_errors_total") >= 2)
    assert decoder.thread.is_alive()

    redis_server.start()
    client = redis_server.client()
    _frames(client, 5)
    assert wait_until(lambda: client.xlen("gw:records") == 5)

    # Redis lost, with all its data (no persistence): the group is gone
    redis_server.stop(signal.SIGKILL)
    time.sleep(0.3)
    assert decoder.thread.is_alive()
    redis_server.start()
    client = redis_server.client()
    _frames(client, 3)
    assert wait_until(lambda: client.xlen("gw:records") == 3)
    records = [decode_record(f[b"d"]) for _, f in client.xrange("gw:records")]
    assert {record.device_id for record in records} == {"ABCD"}
    decoder.halt()


@pytest.mark.integration
def test_a_redis_that_cannot_persist_is_waited_out_without_a_restart(private_redis, tmp_path):
    """Redis refusing writes with MISCONF (its AOF on a device that is full; appendfsync
    everysec): XREADGROUP is a write, so nothing can be decoded. The decoder names it (health,
    gauge), never takes the watchdog's way out (a restart changes nothing; its limit is 1 s
    here), and decodes the waiting frames once Redis can write its AOF again."""
    redis_server = private_redis(appendfsync="everysec")
    client = redis_server.client()
    _frames(client, 3)
    client.bgrewriteaof()  # the frames into the AOF's base, safe from the device
    assert wait_until(lambda: not client.info("persistence")["aof_rewrite_in_progress"])
    aof_on_full_device(redis_server)
    client = redis_server.client()
    port, health_file = free_port(), tmp_path / "health.json"
    env = {
        **os.environ,
        "GATEWAY_REDIS_URL": redis_server.url,
        "GATEWAY_STREAM_PREFIX": "gw",
        "GATEWAY_METRICS_PORT": str(port),
        "GATEWAY_HEALTH_FILE": str(health_file),
        "GATEWAY_UNHEALTHY_EXIT_S": "1",
        "GATEWAY_BLOCK_MS": "100",
    }
    process = subprocess.Popen([str(DECODER)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        reason = "redis: Redis cannot persist: No space left on device"
        assert wait_until(lambda: reason in http_get(port, "/healthz")[1], 10)
        assert sample(port, "gateway_redis_refusing_writes", reason="persistence") == 1
        time.sleep(3)  # three times the unhealthy limit
        assert process.poll() is None, "the decoder exited while Redis could not persist"

        client.bgrewriteaof()  # a new AOF file, on the disk: Redis can write again
        assert wait_until(lambda: client.xlen("gw:records") == 3, 15)
        assert wait_until(lambda: http_get(port, "/healthz") == (200, "ok\n"), 15)
        assert sample(port, "gateway_redis_refusing_writes", reason="persistence") == 0
    finally:
        process.terminate()
        process.wait(10)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""


@pytest.mark.integration
def test_console_script_decodes_and_stops_on_sigterm(redis_url, streams):
    env = {
        **os.environ,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_STREAM_PREFIX": streams.keys.prefix,
        "GATEWAY_CONSUMER_NAME": "process-test",
        "GATEWAY_BLOCK_MS": "100",
        "GATEWAY_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [str(DECODER)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        status = D7Status(address=b"\x00\x0b\x57\x00\x00\x91\x51\xdc")
        (frame_id,) = streams.add_frames(
            [encode_unsolicited(62, EnergyConfigFile(600, enabled=True).encode(), status)]
        )
        assert wait_until(lambda: streams.outputs() == 1)
        (record,) = streams.records()
        assert (record.device_id, record.kind, record.frame_id) == (
            "B5700009151DC",
            "energy_config",
            frame_id,
        )
        assert record.fields == {"interval_s": 600, "enabled": True}
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, stderr
    assert '"event": "decoder_stopped"' in stderr


@pytest.mark.integration
def test_a_decoder_started_on_a_full_redis_trims_the_archive_that_fills_it(
    private_redis, start_decoder
):
    """Over its maxmemory, Redis refuses XGROUP CREATE even for a group that exists: a decoder
    (re)started then must still get going, and trim the decoded frames that fill Redis."""
    redis_server = private_redis(appendfsync=None)
    client = redis_server.client()
    url = redis_server.url
    first = start_decoder(redis_url=url, stream_prefix="gw")
    _frames(client, 200)
    assert wait_until(lambda: client.xlen("gw:records") == 200)
    first.halt()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", client.info("memory")["used_memory"] - 64 * 1024)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.xgroup_create("gw:frames", "decoder", id="0")  # the group exists: still refused

    second = start_decoder(
        redis_url=url,
        stream_prefix="gw",
        consumer="replica-b",
        frames_retention_s=0.5,
        trim_interval_s=0.1,
    )
    assert wait_until(lambda: client.xlen("gw:frames") == 0)
    assert second.metric("gateway_stream_trimmed_entries_total", stream="gw:frames") == 200

    client.config_set("maxmemory", 0)  # room again: the same decoder goes on decoding
    _frames(client, 1)
    assert wait_until(lambda: client.xlen("gw:records") == 201)
    assert second.thread.is_alive()
    second.halt()


@pytest.mark.integration
def test_dead_letters_beyond_the_ceiling_are_trimmed_and_counted(
    redis_client, stream_prefix, start_decoder
):
    vid = D7Status(address=b"\xab\xcd", address_type=AddressType.VID)
    bad = encode_unsolicited(64, b"\x00" * 4, vid)
    for n in range(5):  # unknown file id 64: five dead letters
        entry = encode(FrameEntry(bad, time.time(), n))
        redis_client.xadd(f"{stream_prefix}:frames", {b"d": entry})
    decoder = start_decoder(dead_max_letters=3, trim_interval_s=0.1)
    dead = f"{stream_prefix}:dead"
    assert wait_until(
        lambda: decoder.metric("gateway_stream_trimmed_entries_total", stream=dead) == 2
    )
    assert redis_client.xlen(dead) == 3
    decoder.halt()
