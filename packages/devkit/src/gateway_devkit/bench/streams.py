"""Reading the private Redis after a run: stream entry ids as times, a group's backlog, Redis's
own count of the commands it ran."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway_common.streams import ENTRY_FIELD

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis


def entry_text(entry_id: Any) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def id_seconds(entry_id: bytes | str) -> float:
    """The epoch time (s, ms resolution) in a stream entry id."""
    return int(entry_text(entry_id).partition("-")[0]) / 1000


def last_id(client: redis.Redis, key: str) -> str:
    """The stream's last generated entry id ("0-0" while it does not exist)."""
    if not client.exists(key):
        return "0-0"
    return entry_text(client.xinfo_stream(key)["last-generated-id"])


def stream_entries(
    client: redis.Redis, key: str, after: str = "-"
) -> Iterator[tuple[bytes, bytes]]:
    """(entry id, field d) of every entry, in pages."""
    start = after
    while True:
        page: Any = client.xrange(key, min=start, max="+", count=5000)
        if not page:
            return
        for entry_id, fields in page:
            yield entry_id, fields.get(ENTRY_FIELD, b"")
        start = "(" + page[-1][0].decode()


def group_backlog(client: redis.Redis, key: str, group: str) -> int:
    groups: Any = client.xinfo_groups(key)
    for info in groups:
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name == group:
            return int(info.get("pending") or 0) + int(info.get("lag") or 0)
    return -1


def command_calls(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """Redis's own count of each command: name -> (calls, µs spent)."""
    stats: Any = client.info("commandstats")
    return {
        key.removeprefix("cmdstat_"): (int(value["calls"]), int(value["usec"]))
        for key, value in stats.items()
    }


def command_rows(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], frames: int
) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, (calls, usec) in sorted(after.items(), key=lambda kv: -kv[1][0]):
        calls_before, usec_before = before.get(name, (0, 0))
        done = calls - calls_before
        if done <= 0 or name in {"info", "ping", "client|setinfo", "hello"}:
            continue
        spent = usec - usec_before
        rows.append((name, f"{done:,}", f"{done / frames:.3f}", f"{spent / done:.1f}"))
    return rows
