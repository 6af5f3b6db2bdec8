"""What XINFO says of a consumer group, with its lag made right where Redis 7.0 gets it wrong.

After Redis reloads an AOF that was rewritten since a group was created (ingest asks for a
rewrite after every Redis start, gateway_common.aof_compaction; Redis rewrites by itself as the
file grows), Redis 7.0 restores the group's entries-read from the rewrite and forgets the
deliveries since: XINFO GROUPS reports a lag for entries the group has long had (seen: 2,512
with nothing left to read). A group whose last-delivered-id is the stream's last id has read
everything, whatever the counter says: its lag is 0. A group that is behind keeps the lag
Redis reports, which may then be too high (counting exactly would be an XRANGE over the
backlog); None where Redis cannot tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from gateway_common.streams import entry_id_key

if TYPE_CHECKING:
    import redis

__all__ = ["GroupInfo", "read_group", "settled_lag"]


@dataclass(frozen=True, slots=True)
class GroupInfo:
    name: str
    pending: int
    lag: int | None
    last_delivered_id: str


def settled_lag(lag: int | None, last_delivered_id: str, last_generated_id: str) -> int | None:
    """0 when the group has been delivered the stream's last entry, else Redis's `lag`."""
    if entry_id_key(last_delivered_id) >= entry_id_key(last_generated_id):
        return 0
    return lag


def read_group(client: redis.Redis, stream: str, group: str) -> GroupInfo | None:
    """The group `group` of `stream`; None when the stream or the group does not exist."""
    try:
        groups: Any = client.xinfo_groups(stream)
        if not any(_text(info["name"]) == group for info in groups):
            return None
        stream_info: Any = client.xinfo_stream(stream)
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return None
        raise
    info = next(info for info in groups if _text(info["name"]) == group)
    last_delivered = _text(info["last-delivered-id"])
    lag = info.get("lag")
    return GroupInfo(
        name=group,
        pending=int(info["pending"]),
        lag=settled_lag(
            None if lag is None else int(lag),
            last_delivered,
            _text(stream_info["last-generated-id"]),
        ),
        last_delivered_id=last_delivered,
    )


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
