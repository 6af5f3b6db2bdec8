"""Group lag as XINFO reports it, and as the gateway reads it, across a Redis restart."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from gateway_common.group_info import read_group, settled_lag
from gateway_devkit.polling import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway_devkit.servers import PrivateRedis

STREAM = "lagtest:frames"
GROUP = "decoder"


def test_settled_lag_is_zero_only_once_the_last_entry_was_delivered() -> None:
    assert settled_lag(7, "5-0", "5-0") == 0
    assert settled_lag(None, "5-1", "5-0") == 0
    assert settled_lag(7, "4-9", "5-0") == 7
    assert settled_lag(None, "0-0", "5-0") is None


def _consume(client: Any, count: int) -> None:
    got = client.xreadgroup(GROUP, "c1", {STREAM: ">"}, count=count)
    ids = [entry_id for _stream, entries in got for entry_id, _fields in entries]
    assert len(ids) == count
    client.xack(STREAM, GROUP, *ids)


@pytest.mark.integration
def test_a_caught_up_group_has_no_lag_after_redis_reloads_a_rewritten_aof(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    server = private_redis("always")
    client = server.client()
    for n in range(3):
        client.xadd(STREAM, {"d": str(n)})
    client.xgroup_create(STREAM, GROUP, id="0")
    _consume(client, 3)
    client.bgrewriteaof()
    assert wait_until(
        lambda: (
            not int(client.info("persistence")["aof_rewrite_in_progress"])
            and int(client.info("persistence")["aof_rewrites"]) == 1
        ),
        10,
    )
    for n in range(3, 5):
        client.xadd(STREAM, {"d": str(n)})
    _consume(client, 2)
    assert read_group(client, STREAM, GROUP) == read_group(client, STREAM, GROUP)
    before = read_group(client, STREAM, GROUP)
    assert before is not None
    assert (before.pending, before.lag) == (0, 0)
    client.close()

    server.stop()
    server.start()
    client = server.client()
    (raw,) = (g for g in client.xinfo_groups(STREAM) if g["name"] == GROUP.encode())
    after = read_group(client, STREAM, GROUP)
    client.close()
    # Redis 7.0 reports entries the group already had; 7.2 may not (then only `after` matters).
    print(f"XINFO GROUPS lag after the reload: {raw['lag']}")
    assert after is not None
    assert (after.pending, after.lag, after.last_delivered_id) == (
        0,
        0,
        before.last_delivered_id,
    )


@pytest.mark.integration
def test_read_group_of_a_missing_stream_or_group_is_none(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    client = private_redis(None).client()
    assert read_group(client, STREAM, GROUP) is None
    client.xadd(STREAM, {"d": "0"})
    assert read_group(client, STREAM, GROUP) is None
    client.xgroup_create(STREAM, GROUP, id="0")
    info = read_group(client, STREAM, GROUP)
    assert info is not None
    assert (info.pending, info.lag) == (0, 1)
    client.close()
