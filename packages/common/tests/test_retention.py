"""Retention against the real Redis: trimming never deletes what any group has still to process."""

from __future__ import annotations

import itertools
import socket
import time
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway_common.redis_conn import connect
from gateway_common.retention import RetentionRule, StreamRetention, trim_stream

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
_keys = itertools.count()


def _ids(client: redis.Redis, stream: str) -> list[str]:
    return [entry_id.decode() for entry_id, _ in client.xrange(stream)]


def _add_old(client: redis.Redis, stream: str, count: int, age_ms: int = 2 * HOUR_MS) -> list[str]:
    """Entries whose ids say they were added `age_ms` ago (ids are the server's ms time)."""
    base = int(time.time() * 1000) - age_ms
    return [client.xadd(stream, {b"d": b"x"}, id=f"{base}-{i}").decode() for i in range(count)]


def _add_new(client: redis.Redis, stream: str, count: int) -> list[str]:
    return [client.xadd(stream, {b"d": b"x"}).decode() for _ in range(count)]


def _read(client: redis.Redis, stream: str, group: str, consumer: str, count: int) -> list[str]:
    reply: Any = client.xreadgroup(group, consumer, {stream: ">"}, count=count)
    return [entry_id.decode() for entry_id, _ in reply[0][1]] if reply else []


def _pending(client: redis.Redis, stream: str, group: str) -> list[str]:
    rows: Any = client.xpending_range(stream, group, min="-", max="+", count=10_000)
    return [row["message_id"].decode() for row in rows]


def test_acknowledged_entries_older_than_retention_are_trimmed_newer_kept(
    redis_client: redis.Redis, stream_prefix: str
) -> None:
    stream = f"{stream_prefix}:frames"
    old = _add_old(redis_client, stream, 5)
    new = _add_new(redis_client, stream, 3)
    redis_client.xgroup_create(stream, "decoder", id="0")
    read = _read(redis_client, stream, "decoder", "a", 100)
    assert read == old + new
    redis_client.xack(stream, "decoder", *read)

    result = trim_stream(redis_client, stream, retention_ms=HOUR_MS, required_groups=["decoder"])

    assert result.trimmed == 5
    assert result.limited_by == "retention"
    assert _ids(redis_client, stream) == new
    # again: nothing more to do
    again = trim_stream(redis_client, stream, retention_ms=HOUR_MS, required_groups=["decoder"])
    assert again.trimmed == 0
    assert _ids(redis_client, stream) == new


def test_pending_and_undelivered_entries_are_never_trimmed(
    redis_client: redis.Redis, stream_prefix: str
) -> None:
    stream = f"{stream_prefix}:records"
    ids = _add_old(redis_client, stream, 20)
    for group in ("g1", "g2", "g3"):
        redis_client.xgroup_create(stream, group, id="0")
    # g1: two consumers read everything; one entry in the middle stays pending on "b"
    first = _read(redis_client, stream, "g1", "a", 10)
    second = _read(redis_client, stream, "g1", "b", 10)
    redis_client.xack(stream, "g1", *first, *[i for i in second if i != ids[14]])
    # g2: read and acknowledged the first 16, the rest never delivered to it
    redis_client.xack(stream, "g2", *_read(redis_client, stream, "g2", "c", 16))
    # g3: everything read and acknowledged
    redis_client.xack(stream, "g3", *_read(redis_client, stream, "g3", "d", 100))

    result = trim_stream(redis_client, stream, retention_ms=0, required_groups=["g1"])

    assert result.trimmed == 14
    assert result.limited_by == "group g1"
    assert _ids(redis_client, stream) == ids[14:]
    assert _pending(redis_client, stream, "g1") == [ids[14]]

    redis_client.xack(stream, "g1", ids[14])
    result = trim_stream(redis_client, stream, retention_ms=0, required_groups=["g1"])
    assert result.limited_by == "group g2"
    assert _ids(redis_client, stream) == ids[16:]  # g2's next entry is ids[16]


def test_a_group_that_has_read_nothing_blocks_all_trimming(
    redis_client: redis.Redis, stream_prefix: str
) -> None:
    stream = f"{stream_prefix}:frames"
    _add_old(redis_client, stream, 4)
    redis_client.xgroup_create(stream, "decoder", id="0")
    redis_client.xack(stream, "decoder", *_read(redis_client, stream, "decoder", "a", 100))
    redis_client.xgroup_create(stream, "late", id="0")

    result = trim_stream(redis_client, stream, retention_ms=0, required_groups=["decoder"])

    assert result.trimmed == 0
    assert redis_client.xlen(stream) == 4


def test_a_missing_required_group_blocks_all_trimming(
    redis_client: redis.Redis, stream_prefix: str
) -> None:
    stream = f"{stream_prefix}:frames"
    _add_old(redis_client, stream, 4)
    assert trim_stream(redis_client, stream, retention_ms=0, required_groups=["decoder"]) == (
        trim_stream(redis_client, stream, retention_ms=0, required_groups=["decoder"])
    )
    result = trim_stream(redis_client, stream, retention_ms=0, required_groups=["decoder"])
    assert (result.trimmed, result.limited_by) == (0, "missing group decoder")
    redis_client.xgroup_create(stream, "other", id="$")
    result = trim_stream(redis_client, stream, retention_ms=0, required_groups=["decoder"])
    assert (result.trimmed, result.limited_by) == (0, "missing group decoder")
    assert redis_client.xlen(stream) == 4


def test_without_groups_a_stream_is_trimmed_by_age_only(
    redis_client: redis.Redis, stream_prefix: str
) -> None:
    stream = f"{stream_prefix}:dead"
    _add_old(redis_client, stream, 3, age_ms=3 * HOUR_MS)
    middle = _add_old(redis_client, stream, 2, age_ms=HOUR_MS // 2)
    new = _add_new(redis_client, stream, 2)

    result = trim_stream(redis_client, stream, retention_ms=HOUR_MS, required_groups=())

    assert result.trimmed == 3
    assert _ids(redis_client, stream) == middle + new
    assert trim_stream(redis_client, stream, retention_ms=HOUR_MS, required_groups=()).trimmed == 0


def test_without_groups_a_stream_also_keeps_only_its_newest_max_entries(
    redis_client: redis.Redis, stream_prefix: str
) -> None:
    stream = f"{stream_prefix}:dead"
    _add_old(redis_client, stream, 2, age_ms=3 * HOUR_MS)  # past the retention anyway
    young = _add_new(redis_client, stream, 10)

    result = trim_stream(
        redis_client, stream, retention_ms=HOUR_MS, required_groups=(), max_entries=4
    )

    assert result.trimmed == 8
    assert result.limited_by == "max entries"
    assert _ids(redis_client, stream) == young[-4:]
    unlimited = trim_stream(
        redis_client, stream, retention_ms=HOUR_MS, required_groups=(), max_entries=0
    )
    assert unlimited.trimmed == 0


def test_the_length_ceiling_never_applies_to_a_stream_with_a_group(
    redis_client: redis.Redis, stream_prefix: str
) -> None:
    stream = f"{stream_prefix}:dead"
    young = _add_new(redis_client, stream, 6)
    redis_client.xgroup_create(stream, "tool", id="0")  # someone reads it: never cut behind it

    result = trim_stream(
        redis_client, stream, retention_ms=HOUR_MS, required_groups=(), max_entries=2
    )

    assert result.trimmed == 0
    assert _ids(redis_client, stream) == young


def test_entries_a_group_skipped_at_creation_may_be_trimmed(
    redis_client: redis.Redis, stream_prefix: str
) -> None:
    stream = f"{stream_prefix}:records"
    _add_old(redis_client, stream, 3)
    redis_client.xgroup_create(stream, "publisher", id="$")  # will never read these three
    kept = _add_new(redis_client, stream, 2)
    result = trim_stream(redis_client, stream, retention_ms=0, required_groups=["publisher"])
    assert result.trimmed == 3
    assert _ids(redis_client, stream) == kept


def test_the_id_after_the_largest_sequence_number(
    redis_client: redis.Redis, stream_prefix: str
) -> None:
    stream = f"{stream_prefix}:frames"
    top = "5-18446744073709551615"
    redis_client.xadd(stream, {b"d": b"x"}, id=top)
    redis_client.xadd(stream, {b"d": b"x"}, id="6-0")
    redis_client.xadd(stream, {b"d": b"x"}, id="6-1")
    redis_client.xgroup_create(stream, "decoder", id="0")
    redis_client.xack(stream, "decoder", *_read(redis_client, stream, "decoder", "a", 1))

    result = trim_stream(redis_client, stream, retention_ms=0, required_groups=["decoder"])

    assert (result.trimmed, result.min_id) == (1, "6-0")
    assert _ids(redis_client, stream) == ["6-0", "6-1"]


def test_a_missing_stream_is_not_an_error(redis_client: redis.Redis, stream_prefix: str) -> None:
    result = trim_stream(
        redis_client, f"{stream_prefix}:nothing", retention_ms=0, required_groups=()
    )
    assert (result.trimmed, result.limited_by) == (0, "no stream")


# Per group: its reads (consumer, count) and the entries (by index) it leaves unacknowledged.
_GROUP_HISTORY = st.tuples(
    st.lists(st.tuples(st.integers(0, 2), st.integers(1, 12)), max_size=4),
    st.sets(st.integers(0, 40), max_size=3),
    st.booleans(),
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    initial=st.integers(0, 30),
    histories=st.lists(_GROUP_HISTORY, min_size=1, max_size=3),
    later=st.integers(0, 5),
    retention_entries=st.integers(0, 40),
)
def test_trimming_deletes_exactly_what_every_group_is_done_with(
    redis_client: redis.Redis,
    stream_prefix: str,
    initial: int,
    histories: list[tuple[list[tuple[int, int]], set[int], bool]],
    later: int,
    retention_entries: int,
) -> None:
    stream = f"{stream_prefix}:prop{next(_keys)}"
    groups = [f"g{i}" for i in range(len(histories))]
    base = int(time.time() * 1000) - 10 * HOUR_MS
    added: list[str] = []

    def add(count: int) -> None:
        for _ in range(count):
            ms = base + len(added) * 1000  # one entry a second, ten hours ago
            added.append(redis_client.xadd(stream, {b"d": b"x"}, id=f"{ms}-0").decode())

    add(initial)
    for group in groups:
        redis_client.xgroup_create(stream, group, id="0", mkstream=True)
    for group, (reads, unacked, claim) in zip(groups, histories, strict=True):
        for consumer, count in reads:
            _read(redis_client, stream, group, f"c{consumer}", count)
        if claim:  # another consumer takes over some pending entries
            redis_client.xautoclaim(stream, group, "claimer", 0, "0-0", count=3)
        keep = {added[i] for i in unacked if i < len(added)}
        done_ids = [i for i in _pending(redis_client, stream, group) if i not in keep]
        if done_ids:
            redis_client.xack(stream, group, *done_ids)
    add(later)  # never delivered to any group

    pending = {g: set(_pending(redis_client, stream, g)) for g in groups}
    delivered_up_to = {
        _text(g["name"]): _key(_text(g["last-delivered-id"]))
        for g in redis_client.xinfo_groups(stream)
    }
    # the retention keeps the newest `retention_entries` seconds' worth of entries
    retention_ms = int(time.time() * 1000) - (base + (len(added) - retention_entries) * 1000) + 500

    result = trim_stream(redis_client, stream, retention_ms=retention_ms, required_groups=groups)

    left = _ids(redis_client, stream)
    trimmed = added[: len(added) - len(left)]
    assert left == added[len(trimmed) :], "trimming removes a prefix of the stream"
    assert result.trimmed == len(trimmed)
    done = [
        all(_key(i) <= delivered_up_to[g] and i not in pending[g] for g in groups)
        and idx < len(added) - retention_entries
        for idx, i in enumerate(added)
    ]
    for idx, entry_id in enumerate(trimmed):
        assert done[idx], f"{entry_id} was trimmed while a group still needs it"
    # and the trim went as far as allowed: the first entry kept was still needed
    if left:
        assert not done[len(trimmed)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


# ---------------------------------------------------------------- StreamRetention


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_retention_runs_every_interval_and_counts(
    redis_client: redis.Redis, stream_prefix: str
) -> None:
    frames, dead = f"{stream_prefix}:frames", f"{stream_prefix}:dead"
    _add_old(redis_client, frames, 4)
    redis_client.xgroup_create(frames, "decoder", id="0")
    redis_client.xack(frames, "decoder", *_read(redis_client, frames, "decoder", "a", 100))
    _add_old(redis_client, dead, 2)
    clock = FakeClock()
    registry = CollectorRegistry()
    retention = StreamRetention(
        redis_client,
        [RetentionRule(frames, 3600.0, ("decoder",)), RetentionRule(dead, 3600.0, ())],
        interval_s=60.0,
        registry=registry,
        clock=clock,
    )

    retention.run_due()
    assert redis_client.xlen(frames) == 0
    assert redis_client.xlen(dead) == 0
    sample = registry.get_sample_value
    assert sample("gateway_stream_trimmed_entries_total", {"stream": frames}) == 4
    assert sample("gateway_stream_trimmed_entries_total", {"stream": dead}) == 2

    _add_old(redis_client, dead, 1)
    clock.now += 59
    retention.run_due()
    assert redis_client.xlen(dead) == 1  # not due yet
    clock.now += 1
    retention.run_due()
    assert redis_client.xlen(dead) == 0


def test_retention_survives_redis_errors(redis_client: redis.Redis, stream_prefix: str) -> None:
    wrong, good = f"{stream_prefix}:wrong", f"{stream_prefix}:dead"
    redis_client.set(wrong, b"not a stream")
    _add_old(redis_client, good, 2)
    registry = CollectorRegistry()
    retention = StreamRetention(
        redis_client,
        [RetentionRule(wrong, 0.0, ()), RetentionRule(good, 0.0, ())],
        interval_s=60.0,
        registry=registry,
    )
    assert retention.run_once() == {good: 2}
    assert registry.get_sample_value("gateway_stream_trim_errors_total", {"stream": wrong}) == 1

    unreachable = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    try:
        away = StreamRetention(unreachable, [RetentionRule(good, 0.0, ())], interval_s=1.0)
        assert away.run_once() == {}
    finally:
        unreachable.close()


def test_negative_retention_is_refused(redis_client: redis.Redis, stream_prefix: str) -> None:
    with pytest.raises(ValueError, match="negative"):
        trim_stream(redis_client, f"{stream_prefix}:x", retention_ms=-1, required_groups=())


def test_a_silent_redis_costs_one_socket_timeout_per_pass() -> None:
    """Every stream would wait out the same silent socket: the pass ends at the first timeout,
    the streams not tried count as failed (a service's loop turn stays short)."""
    timeout_s = 0.3
    with socket.create_server(("127.0.0.1", 0)) as silent:  # never accepts, never answers
        client = connect(
            f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
            timeout_s=timeout_s,
            connect_timeout_s=timeout_s,
        )
        registry = CollectorRegistry()
        streams = ("silent:frames", "silent:dead", "silent:records")
        retention = StreamRetention(
            client,
            [RetentionRule(stream, 0.0, ()) for stream in streams],
            interval_s=60.0,
            registry=registry,
        )
        started = time.monotonic()
        assert retention.run_once() == {}
        took = time.monotonic() - started
        client.close()
    assert took < 2 * timeout_s, took
    errors = [
        registry.get_sample_value("gateway_stream_trim_errors_total", {"stream": stream})
        for stream in streams
    ]
    assert errors == [1, 1, 1]
