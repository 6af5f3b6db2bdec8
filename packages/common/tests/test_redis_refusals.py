"""Redis's refusals named from its error replies, as redis-py hands them over."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError

from gateway_common.redis_refusals import Refusal, RefusalGauge, describe, refusal_of

PERSIST = Refusal("persistence", "Redis cannot persist: No space left on device")
FULL = Refusal("memory", "Redis is full: its used memory is over its maxmemory")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("MISCONF Errors writing to the AOF file: No space left on device", PERSIST),
        # inside a pipeline (MULTI/EXEC), redis-py names the command first
        (
            (
                "Command # 1 (XADD gw:frames * d \x00\x01) of pipeline caused error: "
                "MISCONF Errors writing to the AOF file: No space left on device"
            ),
            PERSIST,
        ),
        # inside a script, Redis names the script after the error
        (
            (
                "MISCONF Errors writing to the AOF file: No space left on device script: "
                "5f68932432ff0195b07f516ad4881443057b5f6d, on @user_script:5."
            ),
            PERSIST,
        ),
        (
            "MISCONF Errors writing to the AOF file: Input/output error",
            Refusal("persistence", "Redis cannot persist: Input/output error"),
        ),
        (
            (
                "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to "
                "persist to disk. Commands that may modify the data set are disabled..."
            ),
            Refusal("persistence", "Redis cannot persist: its last RDB snapshot failed"),
        ),
        ("OOM command not allowed when used memory > 'maxmemory'.", FULL),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", None),
        ("NOGROUP No such key 'gw:frames' or consumer group 'decoder'", None),
    ],
)
def test_refusals_are_named(message: str, expected: Refusal | None) -> None:
    assert refusal_of(ResponseError(message)) == expected


def test_redis_py_s_own_classes_are_named_too() -> None:
    error = OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'.")
    assert refusal_of(error) == FULL


def test_other_errors_are_not_refusals() -> None:
    away = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    assert refusal_of(away) is None
    assert describe(away) == "ConnectionError"
    misconf = ResponseError("MISCONF Errors writing to the AOF file: No space left on device")
    assert describe(misconf) == PERSIST.text


def test_the_gauge_shows_the_current_refusal_only() -> None:
    registry = CollectorRegistry()
    gauge = RefusalGauge(registry)

    def values() -> dict[str, float | None]:
        return {
            reason: registry.get_sample_value("gateway_redis_refusing_writes", {"reason": reason})
            for reason in ("persistence", "memory")
        }

    assert values() == {"persistence": 0, "memory": 0}
    gauge.observe(PERSIST)
    assert values() == {"persistence": 1, "memory": 0}
    gauge.observe(FULL)
    assert values() == {"persistence": 0, "memory": 1}
    gauge.observe(None)
    assert values() == {"persistence": 0, "memory": 0}
