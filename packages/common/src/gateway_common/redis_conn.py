"""The one place that builds Redis clients (redis-py) and names the "Redis is away" errors."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, ResponseError
from redis.retry import Retry

__all__ = ["REDIS_UNAVAILABLE", "check_url", "connect", "ensure_group"]

#: Errors after which a service waits and retries instead of failing a message.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    BusyLoadingError,
)

#: A blocking read (XREADGROUP BLOCK) must never block longer than this socket timeout.
SOCKET_TIMEOUT_S = 10.0
#: A connection idle this long is checked (PING) before it is used again.
HEALTH_CHECK_INTERVAL_S = 30


def check_url(url: str) -> None:
    """Raise ValueError, saying why, if redis-py cannot use `url` (a bad port, say)."""
    redis.ConnectionPool.from_url(url).disconnect()  # parses only: a pool connects lazily


def connect(
    url: str,
    *,
    timeout_s: float = SOCKET_TIMEOUT_S,
    connect_timeout_s: float = 5.0,
    health_checks: bool = True,
) -> redis.Redis:
    """A client for `url` (`redis://`, `rediss://` or `unix://`); it connects lazily.

    With `health_checks`, a connection idle for 30 s, or new, is checked with a PING before
    its next command. Redis refuses PING while it cannot persist (MISCONF), which fails that
    command, a read too: a short-lived client (gatewayctl, a read at start) goes without.

    No retries of redis-py's own (its constructor's default is 10, on timeouts too): a call on
    a silent socket fails once, after `timeout_s`, and the service's loop decides (it backs off
    and reads its pending entries again). Hidden retries would multiply every bound of
    docs/guarantees.md, and repeat a command whose first copy reached Redis.
    """
    client: redis.Redis = redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=connect_timeout_s,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_INTERVAL_S if health_checks else 0,
        retry=Retry(NoBackoff(), 0),
    )
    return client


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) if it does not exist yet; reading starts at 0.

    Looks first (XINFO GROUPS, a read): XGROUP CREATE is refused while Redis is over its
    maxmemory, even for a group that exists, and a service must get going then too (the decoder
    is what trims the frames and frees the memory).
    """
    try:
        groups: Any = client.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" not in str(exc).lower():
            raise
        groups = []
    if any(_text(info["name"]) == group for info in groups):
        return
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
