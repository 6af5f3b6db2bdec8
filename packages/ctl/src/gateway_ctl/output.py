"""Small formatting helpers shared by the commands: JSON lines, times, Redis's clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

__all__ = ["as_text", "iso_time", "print_json", "redis_now"]


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def print_json(obj: Any) -> None:
    """One JSON document on one line of stdout (bytes shown as hex)."""
    print(json.dumps(obj, default=_default, ensure_ascii=False), flush=True)


def iso_time(epoch_s: float | None, timespec: str = "milliseconds") -> str:
    """An epoch time as ISO-8601 UTC (with milliseconds unless told otherwise), or `-`."""
    if epoch_s is None:
        return "-"
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def as_text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def redis_now(client: redis.Redis) -> float:
    """Epoch seconds by the Redis server's clock (the clock of the entry ids)."""
    seconds, microseconds = client.time()
    return float(seconds) + microseconds / 1e6
