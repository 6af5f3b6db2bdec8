"""`gatewayctl config set|list|show|cancel` and the command counts of `gatewayctl status`."""

from __future__ import annotations

import time

import pytest
import redis

from gateway_common.command_store import CommandStore
from gateway_common.commands import Sent
from gateway_common.devices import DeviceEntry
from gateway_common.entries import decode_command
from gateway_common.streams import ENTRY_FIELD, StreamKeys

pytestmark = pytest.mark.integration

DEVICE = "B5700009151DC"


@pytest.fixture
def registered(keys: StreamKeys, redis_client: redis.Redis) -> StreamKeys:
    now = time.time()
    entry = DeviceEntry(now, now, 5, 80, interval_s=600.0, enabled=True)
    redis_client.hset(keys.devices, DEVICE, entry.to_bytes())
    return keys


def test_set_queues_a_command(ctl, registered: StreamKeys, redis_client: redis.Redis) -> None:
    result = ctl("config", "set", DEVICE, "--interval-s", "300", "--disable", "--json")
    assert result.code == 0, result.err
    command = result.json()
    assert {k: command[k] for k in ("id", "device_id", "state", "interval_s", "enabled")} == {
        "id": "1",
        "device_id": DEVICE,
        "state": "queued",
        "interval_s": 300,
        "enabled": False,
    }
    assert command["reason"] == ""
    assert command["timeout_s"] == 1860
    assert command["source"] == "gatewayctl"
    ((_, fields),) = redis_client.xrange(registered.commands)
    assert decode_command(fields[ENTRY_FIELD]).command_id == "1"
    shown = ctl("config", "show", "1", "--json").json()
    assert shown == command
    text = ctl("config", "show", "1")
    assert "queued" in text.out
    assert "300 s, disabled" in text.out


def test_set_keeps_what_is_not_given(ctl, registered: StreamKeys) -> None:
    command = ctl("config", "set", DEVICE, "--disable", "--json").json()
    assert (command["interval_s"], command["enabled"]) == (600, False)
    command = ctl("config", "set", DEVICE, "--interval-s", "60", "--json").json()
    assert (command["interval_s"], command["enabled"]) == (60, True)


def test_bad_requests_are_rejected_and_listed(ctl, registered: StreamKeys) -> None:
    out_of_range = ctl("config", "set", DEVICE, "--interval-s", "5", "--json")
    assert out_of_range.code == 1
    assert out_of_range.json()["state"] == "rejected"
    assert out_of_range.json()["reason"] == "interval 5 s is outside 10 ... 86400 s"
    unknown = ctl("config", "set", "ABCDEF", "--interval-s", "60")
    assert unknown.code == 1
    assert "device ABCDEF is not in the registry" in unknown.out
    nothing = ctl("config", "set", DEVICE)
    assert nothing.code == 2
    assert "give --interval-s, --enable or --disable" in nothing.err
    ctl("config", "set", DEVICE, "--interval-s", "120")
    listed = ctl("config", "list", "--json").json()
    assert listed["total"] == 3
    assert [(c["id"], c["state"]) for c in listed["commands"]] == [
        ("3", "queued"),
        ("2", "rejected"),
        ("1", "rejected"),
    ]
    assert [
        c["id"] for c in ctl("config", "list", "--limit", "1", "--json").json()["commands"]
    ] == ["3"]
    table = ctl("config", "list")
    assert "rejected" in table.out
    assert "not in the registry" in table.out
    status = ctl("status", "--json").json()["commands"]
    assert (status["queued"], status["rejected"], status["sent"]) == (1, 2, 0)
    assert "1 queued, 2 rejected" in ctl("status").out


def test_cancel_only_while_queued(ctl, registered: StreamKeys, redis_client: redis.Redis) -> None:
    first = ctl("config", "set", DEVICE, "--interval-s", "60", "--json").json()
    second = ctl("config", "set", DEVICE, "--interval-s", "90", "--json").json()
    cancelled = ctl("config", "cancel", first["id"], "--json")
    assert cancelled.code == 0
    assert (cancelled.json()["state"], cancelled.json()["reason"]) == (
        "failed",
        "cancelled by an operator",
    )
    again = ctl("config", "cancel", first["id"])
    assert again.code == 1
    assert "has ended (failed)" in again.err
    CommandStore(redis_client, registered).apply(second["id"], Sent(time.time(), tag=1))
    refused = ctl("config", "cancel", second["id"])
    assert refused.code == 1
    assert "the modem has it" in refused.err
    missing = ctl("config", "show", "999")
    assert missing.code == 1
    assert "no command 999" in missing.err
