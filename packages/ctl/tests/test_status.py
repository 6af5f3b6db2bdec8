from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis

from gateway_common.streams import DECODER_GROUP, ENTRY_FIELD, PUBLISHER_GROUP, StreamKeys
from gateway_ctl.main import main, redact
from gateway_devkit.disks import aof_on_full_device
from gateway_devkit.polling import wait_until

pytestmark = pytest.mark.integration

NO_COMMANDS = dict.fromkeys(
    ("queued", "sent", "acknowledged", "confirmed", "failed", "expired", "rejected"), 0
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_url: str, stream_prefix: str) -> StreamKeys:
    monkeypatch.setenv("GATEWAY_REDIS_URL", redis_url)
    monkeypatch.setenv("GATEWAY_STREAM_PREFIX", stream_prefix)
    return StreamKeys(stream_prefix)


def status_json(capsys: pytest.CaptureFixture[str]) -> dict:
    main(["status", "--json"])
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return json.loads(out)


def redis_now_ms(client: redis.Redis) -> int:
    seconds, microseconds = client.time()
    return seconds * 1000 + microseconds // 1000


def test_nothing_yet(env: StreamKeys, capsys: pytest.CaptureFixture[str]) -> None:
    assert status_json(capsys) == {
        "streams": {
            "frames": {"length": 0, "pending": None, "lag": None},
            "records": {"length": 0, "pending": None, "lag": None},
            "dead": {"length": 0},
        },
        "devices": 0,
        "stale_devices": 0,
        "consumers": {"decoder": None, "publisher": None},
        "oldest_unpublished_age_s": None,
        "commands": NO_COMMANDS,
        "redis": {"problems": []},
        "disk": None,
    }


def test_running_gateway(
    env: StreamKeys, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(5):
        redis_client.xadd(env.frames, {ENTRY_FIELD: b"frame%d" % i})
    redis_client.xgroup_create(env.frames, DECODER_GROUP, id="0")
    read = redis_client.xreadgroup(DECODER_GROUP, "decoder-a", {env.frames: ">"}, count=3)
    first_id = read[0][1][0][0]
    redis_client.xack(env.frames, DECODER_GROUP, first_id)
    redis_client.xreadgroup(DECODER_GROUP, "decoder-b", {env.frames: ">"}, count=1)

    now_ms = redis_now_ms(redis_client)
    for age_s in (60, 50, 40, 30):
        redis_client.xadd(env.records, {ENTRY_FIELD: b"r"}, id=f"{now_ms - age_s * 1000}-0")
    redis_client.xgroup_create(env.records, PUBLISHER_GROUP, id="0")
    read = redis_client.xreadgroup(PUBLISHER_GROUP, "pub", {env.records: ">"}, count=2)
    redis_client.xack(env.records, PUBLISHER_GROUP, *(entry_id for entry_id, _ in read[0][1]))
    redis_client.xadd(env.dead, {ENTRY_FIELD: b"dead"})
    redis_client.hset(env.devices, mapping={"A": b"1", "B": b"2", "C": b"3"})

    status = status_json(capsys)
    consumers = status["consumers"]
    for group in consumers.values():
        for consumer in group:
            assert 0 <= consumer.pop("idle_ms") < 10_000
    age = status.pop("oldest_unpublished_age_s")
    assert 40 <= age < 45  # the third record: the first two were published
    assert status == {
        "streams": {
            "frames": {"length": 5, "pending": 3, "lag": 1},
            "records": {"length": 4, "pending": 0, "lag": 2},
            "dead": {"length": 1},
        },
        "devices": 3,
        "stale_devices": 0,  # the entries are unreadable: not judged
        "consumers": {
            "decoder": [
                {"name": "decoder-a", "pending": 2},
                {"name": "decoder-b", "pending": 1},
            ],
            "publisher": [{"name": "pub", "pending": 0}],
        },
        "commands": NO_COMMANDS,
        "redis": {"problems": []},
        "disk": None,
    }


def test_pending_records_are_the_oldest_unpublished(
    env: StreamKeys, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    now_ms = redis_now_ms(redis_client)
    for age_s in (90, 20):
        redis_client.xadd(env.records, {ENTRY_FIELD: b"r"}, id=f"{now_ms - age_s * 1000}-0")
    redis_client.xgroup_create(env.records, PUBLISHER_GROUP, id="0")
    redis_client.xreadgroup(PUBLISHER_GROUP, "pub", {env.records: ">"}, count=1)
    status = status_json(capsys)
    assert status["streams"]["records"] == {"length": 2, "pending": 1, "lag": 1}
    assert 90 <= status["oldest_unpublished_age_s"] < 95


def test_group_without_consumers_and_stream_without_group(
    env: StreamKeys, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_client.xgroup_create(env.frames, DECODER_GROUP, id="$", mkstream=True)
    now_ms = redis_now_ms(redis_client)
    redis_client.xadd(env.records, {ENTRY_FIELD: b"r"}, id=f"{now_ms - 10_000}-0")
    status = status_json(capsys)
    assert status["streams"]["frames"] == {"length": 0, "pending": 0, "lag": 0}
    assert status["streams"]["records"] == {"length": 1, "pending": None, "lag": None}
    assert status["consumers"] == {"decoder": [], "publisher": None}
    assert 10 <= status["oldest_unpublished_age_s"] < 15


def test_all_published_means_no_oldest(
    env: StreamKeys, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_client.xadd(env.records, {ENTRY_FIELD: b"r"})
    redis_client.xgroup_create(env.records, PUBLISHER_GROUP, id="$")
    status = status_json(capsys)
    assert status["streams"]["records"] == {"length": 1, "pending": 0, "lag": 0}
    assert status["oldest_unpublished_age_s"] is None


def test_tables_for_people(
    env: StreamKeys, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_client.xadd(env.frames, {ENTRY_FIELD: b"f"})
    redis_client.xgroup_create(env.frames, DECODER_GROUP, id="0")
    redis_client.xreadgroup(DECODER_GROUP, "decoder-host", {env.frames: ">"})
    main(["status"])
    out = capsys.readouterr().out
    assert env.prefix in out
    assert "decoder-host" in out
    assert "no group yet" in out  # publisher
    assert "devices: 0" in out


def test_a_redis_that_cannot_persist_is_named_and_read_through(
    monkeypatch: pytest.MonkeyPatch,
    private_redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Redis refusing writes with MISCONF (its AOF on a device that is full) still answers
    reads, and status reads them all and names the refusal: no health-check PING (refused too)
    stands before them."""
    server = private_redis(appendfsync="everysec")
    client = server.client()
    keys = StreamKeys("gw")
    client.xadd(keys.frames, {ENTRY_FIELD: b"f"})
    client.xgroup_create(keys.frames, DECODER_GROUP, id="0")
    client.bgrewriteaof()  # into the AOF's base, safe from the device
    assert wait_until(lambda: not client.info("persistence")["aof_rewrite_in_progress"])
    aof_on_full_device(server)
    monkeypatch.setenv("GATEWAY_REDIS_URL", server.url)
    monkeypatch.setenv("GATEWAY_STREAM_PREFIX", "gw")
    monkeypatch.setenv("COLUMNS", "200")
    status = status_json(capsys)
    assert status["redis"] == {"problems": ["Redis cannot persist: No space left on device"]}
    assert status["streams"]["frames"] == {"length": 1, "pending": 0, "lag": 1}
    main(["status"])
    assert "redis: Redis cannot persist: No space left on device" in capsys.readouterr().out


def test_redis_s_disk_is_shown_also_when_redis_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
    env: StreamKeys,
    tmp_path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GATEWAY_REDIS_DATA_DIR", str(tmp_path))
    disk = status_json(capsys)["disk"]
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    assert disk["path"] == str(tmp_path)
    assert abs(disk["free_bytes"] - free) < 64 << 20
    assert not disk["low"]
    assert disk["text"].startswith(f"Redis's data directory {tmp_path} has ")

    monkeypatch.setenv("GATEWAY_DISK_MIN_FREE_MB", str(1 << 40))  # more than any disk
    main(["status"])
    assert "(below 1099511627776 MiB): Redis cannot persist once it is full" in (
        capsys.readouterr().out.replace("\n", "")
    )

    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://127.0.0.1:1/0")
    with pytest.raises(SystemExit) as exc_info:
        main(["status"])
    assert exc_info.value.code == 1
    err = capsys.readouterr().err
    assert f"gatewayctl: Redis's data directory {tmp_path} has " in err
    assert "gatewayctl: cannot reach Redis" in err


def test_unreachable_redis_exits_1_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "GATEWAY_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}
    result = subprocess.run(
        [sys.executable, "-c", "from gateway_ctl.main import main; main()", "status", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("gatewayctl: cannot reach Redis at redis://:***@127.0.0.1:1/0")
    assert result.stderr.count("\n") == 1
    assert "hunter2" not in result.stderr


def test_bad_setting_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_STREAM_PREFIX", "bad prefix!")
    with pytest.raises(SystemExit) as exc_info:
        main(["status"])
    assert exc_info.value.code == 2
    assert "GATEWAY_STREAM_PREFIX" in capsys.readouterr().err


def test_redact() -> None:
    assert redact("redis://u:pw@h:6379/0") == "redis://u:***@h:6379/0"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"
