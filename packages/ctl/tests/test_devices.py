"""`gatewayctl devices` and the stale count of `status`, against the real Redis."""

from __future__ import annotations

import pytest
import redis

from gateway_common.devices import DeviceEntry
from gateway_common.streams import StreamKeys

pytestmark = pytest.mark.integration


def now_s(client: redis.Redis) -> float:
    seconds, microseconds = client.time()
    return seconds + microseconds / 1e6


def test_devices_with_their_staleness(keys: StreamKeys, redis_client: redis.Redis, ctl) -> None:
    now = now_s(redis_client)
    redis_client.hset(
        keys.devices,
        mapping={
            # silent 1000 s, default interval 600 s: within 3 intervals
            "A1": DeviceEntry(now - 9000, now - 1000, 12, 71).to_bytes(),
            # silent 1900 s > 3 x 600 s
            "B2": DeviceEntry(now - 9000, now - 1900, 4, 60).to_bytes(),
            # its config said 60 s: silent 200 s > 180 s
            "C3": DeviceEntry(now - 300, now - 200, 2, 80, interval_s=60).to_bytes(),
            "D4": b"\xc1 not msgpack",
        },
    )
    result = ctl("devices", "--json")
    assert result.code == 0, result.err
    rows = {row["device_id"]: row for row in result.json()["devices"]}
    assert list(rows) == ["A1", "B2", "C3", "D4"]
    assert rows["A1"]["stale"] is False
    assert rows["A1"]["readings"] == 12
    assert rows["A1"]["last_link_budget"] == 71
    assert rows["A1"]["interval_s"] is None
    assert rows["A1"]["stale_after_s"] == 1800
    assert 1000 <= rows["A1"]["silent_s"] < 1010
    assert rows["B2"]["stale"] is True
    assert rows["C3"]["stale"] is True
    assert rows["C3"]["stale_after_s"] == 180
    assert rows["D4"] == {"device_id": "D4", "error": "unreadable registry entry"}

    status = ctl("status", "--json").json()
    assert (status["devices"], status["stale_devices"]) == (4, 2)

    people = ctl("devices")
    assert people.code == 0
    assert "STALE" in people.out
    assert "devices (4, 2 stale)" in people.out
    assert "(2 stale)" in ctl("status").out


def test_default_interval_comes_from_the_environment(
    keys: StreamKeys, redis_client: redis.Redis, ctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = now_s(redis_client)
    redis_client.hset(keys.devices, "A1", DeviceEntry(now - 900, now - 700, 1, 70).to_bytes())
    assert ctl("devices", "--json").json()["devices"][0]["stale"] is False
    monkeypatch.setenv("GATEWAY_DEVICE_INTERVAL_S", "200")
    assert ctl("devices", "--json").json()["devices"][0]["stale"] is True
    monkeypatch.setenv("GATEWAY_DEVICE_INTERVAL_S", "0")
    result = ctl("devices")
    assert result.code == 2
    assert "GATEWAY_DEVICE_INTERVAL_S" in result.err


def test_no_devices(keys: StreamKeys, ctl) -> None:
    assert ctl("devices", "--json").json() == {"devices": []}
