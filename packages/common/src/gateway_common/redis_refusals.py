"""Redis refusing commands while it answers: named the same way by every service and gatewayctl.

Two error replies are conditions of Redis itself, which neither retrying the command nor
restarting a service ends:

- `persistence` (MISCONF): Redis cannot write its AOF (a full disk, a failing SD card). With
  `appendfsync everysec` it then refuses every write, XREADGROUP and XACK included, and PING,
  serves other reads, and retries the AOF write by itself every second; once it succeeds, it
  takes writes again. (With `appendfsync always` it does not refuse: it exits, and the services
  see it unreachable.)
- `memory` (OOM): Redis is over its `maxmemory` (noeviction) and refuses the writes that would
  grow memory (XADD, HSET) until trimming frees some; XACK, XREADGROUP and XTRIM still work.

The services wait both out as they wait out an unreachable Redis (capped backoff, nothing lost,
nothing dead-lettered), report them as a health problem that a restart would not fix, and set
the gauge `gateway_redis_refusing_writes{reason}` while they last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from prometheus_client import Gauge
from redis.exceptions import ResponseError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["REASONS", "Refusal", "RefusalGauge", "describe", "refusal_of"]

RefusalReason = Literal["persistence", "memory"]
REASONS: Final[tuple[RefusalReason, ...]] = ("persistence", "memory")

_AOF_WRITE_ERROR: Final = "Errors writing to the AOF file: "
_PIPELINE_PREFIX_END: Final = " of pipeline caused error: "
_SCRIPT_SUFFIX: Final = " script: "
_MAX_TEXT: Final = 200


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: RefusalReason
    text: str
    """For people: "Redis cannot persist: No space left on device", "Redis is full: ..."."""


def refusal_of(exc: BaseException) -> Refusal | None:
    """The refusal an error reply stands for; None for any other error."""
    if not isinstance(exc, ResponseError):
        return None
    # redis-py prefixes an error inside a pipeline with the command; Redis suffixes one raised
    # inside a script with the script's name and line.
    message = str(exc).rpartition(_PIPELINE_PREFIX_END)[2]
    message = message.partition(_SCRIPT_SUFFIX)[0]
    code, _, detail = message.partition(" ")
    if code == "MISCONF":
        if _AOF_WRITE_ERROR in detail:
            detail = detail.split(_AOF_WRITE_ERROR, 1)[1]
        elif "RDB" in detail:
            detail = "its last RDB snapshot failed"
        return Refusal("persistence", f"Redis cannot persist: {detail[:_MAX_TEXT]}")
    if code == "OOM":
        return Refusal("memory", "Redis is full: its used memory is over its maxmemory")
    return None


def describe(exc: BaseException) -> str:
    """A refusal's text, else the error's type (ConnectionError, ...): for health reasons."""
    refusal = refusal_of(exc)
    return type(exc).__name__ if refusal is None else refusal.text


class RefusalGauge:
    """`gateway_redis_refusing_writes{reason}`: 1 while Redis refuses this service's commands
    for that reason, as the service last saw it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._gauge = Gauge(
            "gateway_redis_refusing_writes",
            "1 while Redis refuses this service's writes: persistence (MISCONF: it cannot "
            "write its AOF, e.g. a full disk), memory (OOM: over its maxmemory)",
            ["reason"],
            registry=registry,
        )
        for reason in REASONS:
            self._gauge.labels(reason=reason).set(0)

    def observe(self, refusal: Refusal | None) -> None:
        """The outcome of the service's last Redis command: a refusal, or none (success, or
        another error: then Redis is not refusing, it is away)."""
        for reason in REASONS:
            self._gauge.labels(reason=reason).set(
                1 if refusal is not None and refusal.reason == reason else 0
            )
