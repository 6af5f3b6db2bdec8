"""`gatewayctl tail`: records as they arrive, without taking them from the publisher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from gateway_common.entries import Record, encode
from gateway_common.redis_conn import ensure_group
from gateway_common.streams import ENTRY_FIELD, PUBLISHER_GROUP, StreamKeys

pytestmark = pytest.mark.integration

GATEWAYCTL = str(Path(sys.executable).parent / "gatewayctl")


def rec(device: str, at: float) -> Record:
    fields = {"button_id": 1, "mask": 1, "buttons_state": 1}
    return Record(device, "button", fields, 70, 57, at, "1-0")


def start_tail(redis_url: str, keys: StreamKeys, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_STREAM_PREFIX": keys.prefix,
        "COLUMNS": "200",
    }
    process = subprocess.Popen(
        [GATEWAYCTL, "tail", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    line = process.stderr.readline()  # printed once its starting point is fixed
    assert line.startswith(f"following {keys.records} after "), line
    return process


def test_tail_prints_new_records_only(
    redis_url: str, stream_prefix: str, redis_client: redis.Redis
) -> None:
    keys = StreamKeys(stream_prefix)
    redis_client.xadd(keys.records, {ENTRY_FIELD: encode(rec("OLD", 1.0))})
    ensure_group(redis_client, keys.records, PUBLISHER_GROUP)
    process = start_tail(redis_url, keys, "--json", "--count", "3")
    try:
        redis_client.xadd(keys.records, {ENTRY_FIELD: encode(rec("A1", 1_767_225_600.5))})
        redis_client.xadd(keys.records, {ENTRY_FIELD: b"\xc1"})
        redis_client.xadd(keys.records, {ENTRY_FIELD: encode(rec("B2", 1_767_225_601.0))})
        out, _err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line.get("device_id") for line in lines] == ["A1", None, "B2"]
    assert lines[0]["received_at"] == 1_767_225_600.5
    assert lines[0]["fields"] == {"button_id": 1, "mask": 1, "buttons_state": 1}
    assert "not a msgpack entry" in lines[1]["error"]
    # a plain reader: the publisher group did not see any of them delivered
    (group,) = redis_client.xinfo_groups(keys.records)
    assert (group["pending"], group["lag"]) == (0, 4)
    assert len(redis_client.xinfo_groups(keys.records)) == 1


def test_tail_for_people_stops_on_ctrl_c(
    redis_url: str, stream_prefix: str, redis_client: redis.Redis
) -> None:
    keys = StreamKeys(stream_prefix)
    process = start_tail(redis_url, keys)
    try:
        redis_client.xadd(keys.records, {ENTRY_FIELD: encode(rec("C3", 1_767_225_600.0))})
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "C3" in line
        assert "button" in line
        assert "2026-01-01T00:00:00.000Z" in line
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        assert process.wait(5) == 0
    finally:
        process.kill()


def test_tail_without_redis_exits_1() -> None:
    env = {**os.environ, "GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0"}
    result = subprocess.run(
        [GATEWAYCTL, "tail"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 1
    assert result.stderr.startswith("gatewayctl: cannot reach Redis at redis://127.0.0.1:1/0")
