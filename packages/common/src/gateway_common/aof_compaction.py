"""After Redis (re)starts, have it rewrite its AOF once, so that a torn transaction leaves it.

A power cut can tear the AOF's last write inside a MULTI/EXEC block (ingest's batches, every Lua
script's effects are written as such blocks). With `aof-load-truncated yes` Redis 7.0-7.2 loads
such a file correctly, without the torn block, but it truncates the file after the block's last
complete command: the file keeps a MULTI without its EXEC, and Redis appends its new writes
behind it. At the next load that MULTI swallows them: every write acknowledged since the first
restart is lost at the second (reproduced by tests/test_chaos_power_cut.py; Valkey fixed the
same code in 2026). A rewrite (BGREWRITEAOF) replaces the files with a snapshot of what Redis
holds, which is right, and a new incr file; the dangling MULTI goes with the old files.

`rewrite_once_after_start` asks for that rewrite when Redis has not rewritten its AOF since it
started (INFO persistence `aof_rewrites` 0): once per start of Redis, at the first contact of a
service after it. It costs what any AOF rewrite costs (a fork, the data written once), which
also keeps the AOF compact.
"""

from __future__ import annotations

from typing import Any

import redis

from gateway_common.logs import get_logger

__all__ = ["rewrite_once_after_start"]

log = get_logger(__name__)


def rewrite_once_after_start(client: redis.Redis) -> bool:
    """Request BGREWRITEAOF if Redis has AOF on and has not rewritten it since it started;
    True once Redis has (or had) one. Never raises: a Redis error is logged, False returned."""
    try:
        info: Any = client.info("persistence")
        settled = (
            not int(info.get("aof_enabled", 0))
            or int(info.get("aof_rewrites", 0))
            or int(info.get("aof_rewrite_in_progress", 0))
            or int(info.get("aof_rewrite_scheduled", 0))
        )
        if settled:
            return True
        client.bgrewriteaof()
    except redis.ResponseError as exc:
        if "already in progress" in str(exc):
            return True
        log.warning("aof_rewrite_refused", error=str(exc))
        return False
    except redis.RedisError as exc:
        log.warning("aof_rewrite_unavailable", error=str(exc), error_type=type(exc).__name__)
        return False
    log.info("aof_rewrite_requested", reason="first contact since redis started")
    return True
