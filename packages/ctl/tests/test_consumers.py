"""`gatewayctl consumers [prune]` against the real Redis."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from gateway_common.streams import DECODER_GROUP, ENTRY_FIELD, PUBLISHER_GROUP, StreamKeys
from gateway_ctl import consumers
from gateway_ctl.consumers import Verdict

pytestmark = pytest.mark.integration


def fill(client: redis.Redis, stream: str, group: str, count: int) -> None:
    """`count` entries on `stream`, and its group reading from the start."""
    for i in range(count):
        client.xadd(stream, {ENTRY_FIELD: b"entry%d" % i})
    client.xgroup_create(stream, group, id="0")


def take(client: redis.Redis, stream: str, group: str, consumer: str, count: int) -> list[bytes]:
    """`consumer` reads `count` new entries (they are pending on it); their ids."""
    reply: Any = client.xreadgroup(group, consumer, {stream: ">"}, count=count)
    ids = [entry_id for entry_id, _ in reply[0][1]]
    assert len(ids) == count
    return ids


def done(client: redis.Redis, stream: str, group: str, consumer: str) -> None:
    """`consumer` reads one new entry and acknowledges it: it exists with nothing pending."""
    client.xack(stream, group, *take(client, stream, group, consumer, 1))


def names(client: redis.Redis, stream: str, group: str) -> list[str]:
    return [c["name"].decode() for c in client.xinfo_consumers(stream, group)]


def pending_of(client: redis.Redis, stream: str, group: str, consumer: str) -> list[tuple]:
    rows = client.xpending_range(stream, group, "-", "+", 100, consumername=consumer)
    return [(row["message_id"], row["times_delivered"]) for row in rows]


def without_idle(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their idle times checked as plausible, then removed."""
    for row in rows:
        assert 0 <= row.pop("idle_ms") < 10_000, row
    return rows


def test_listing_shows_every_consumer_with_its_pending_count(
    keys: StreamKeys, redis_client: redis.Redis, ctl
) -> None:
    fill(redis_client, keys.frames, DECODER_GROUP, 5)
    take(redis_client, keys.frames, DECODER_GROUP, "decoder-a", 2)
    done(redis_client, keys.frames, DECODER_GROUP, "decoder-b")
    fill(redis_client, keys.records, PUBLISHER_GROUP, 3)
    take(redis_client, keys.records, PUBLISHER_GROUP, "publisher", 3)
    redis_client.xgroup_create(keys.records, "audit", id="0")  # any group of the stream
    take(redis_client, keys.records, "audit", "auditor", 1)

    result = ctl("consumers", "--json")
    assert result.code == 0, result.err
    rows = result.json()["consumers"]
    for row in rows:
        inactive = row.pop("inactive_ms")  # Redis 7.2 reports it; 7.0 does not
        assert inactive is None or isinstance(inactive, int)
    assert without_idle(rows) == [
        {"stream": keys.frames, "group": "decoder", "consumer": "decoder-a", "pending": 2},
        {"stream": keys.frames, "group": "decoder", "consumer": "decoder-b", "pending": 0},
        {"stream": keys.records, "group": "audit", "consumer": "auditor", "pending": 1},
        {"stream": keys.records, "group": "publisher", "consumer": "publisher", "pending": 3},
    ]

    table = ctl("consumers")
    assert table.code == 0, table.err
    assert "consumers (4)" in table.out
    lines = {line.split("│")[3].strip(): line for line in table.out.splitlines() if "│" in line}
    assert set(lines) == {"decoder-a", "decoder-b", "auditor", "publisher"}
    assert lines["decoder-a"].split("│")[4].strip() == "2"
    assert lines["publisher"].split("│")[4].strip() == "3"
    assert keys.records in lines["publisher"]


def test_nothing_to_list_or_prune(keys: StreamKeys, redis_client: redis.Redis, ctl) -> None:
    assert ctl("consumers", "--json").json() == {"consumers": []}
    assert ctl("consumers").out == "no consumers\n"
    redis_client.xgroup_create(keys.frames, DECODER_GROUP, id="$", mkstream=True)
    assert ctl("consumers", "--json").json() == {"consumers": []}
    assert ctl("consumers", "prune", "--idle", "0", "--json").json() == {
        "dry_run": False,
        "idle_s": 0.0,
        "removed": [],
        "kept": [],
        "gone": [],
    }


def test_prune_removes_only_idle_consumers_with_nothing_pending(
    keys: StreamKeys, redis_client: redis.Redis, ctl
) -> None:
    fill(redis_client, keys.frames, DECODER_GROUP, 10)
    fill(redis_client, keys.records, PUBLISHER_GROUP, 2)
    done(redis_client, keys.frames, DECODER_GROUP, "scaled-down")
    busy_ids = take(redis_client, keys.frames, DECODER_GROUP, "crashed", 3)
    done(redis_client, keys.records, PUBLISHER_GROUP, "renamed")
    busy_before = pending_of(redis_client, keys.frames, DECODER_GROUP, "crashed")
    assert [entry_id for entry_id, _ in busy_before] == busy_ids
    time.sleep(0.6)
    done(redis_client, keys.frames, DECODER_GROUP, "live")

    result = ctl("consumers", "prune", "--idle", "0.4", "--json")
    assert result.code == 0, result.err
    body = result.json()
    assert set(body) == {"dry_run", "idle_s", "removed", "kept", "gone"}
    assert (body["dry_run"], body["idle_s"], body["gone"]) == (False, 0.4, [])
    removed = body["removed"]
    for row in removed:
        assert row.pop("idle_ms") >= 400
    assert removed == [
        {"stream": keys.frames, "group": "decoder", "consumer": "scaled-down", "pending": 0},
        {"stream": keys.records, "group": "publisher", "consumer": "renamed", "pending": 0},
    ]
    kept = {row.pop("consumer"): row for row in body["kept"]}
    assert kept["crashed"]["reason"] == "pending"
    assert kept["crashed"]["pending"] == 3
    assert kept["crashed"]["idle_ms"] >= 400
    assert kept["live"]["reason"] == "idle"
    assert kept["live"]["pending"] == 0
    assert kept["live"]["idle_ms"] < 400
    assert set(kept) == {"crashed", "live"}
    assert set(kept["live"]) == {"stream", "group", "pending", "idle_ms", "reason"}

    assert names(redis_client, keys.frames, DECODER_GROUP) == ["crashed", "live"]
    assert names(redis_client, keys.records, PUBLISHER_GROUP) == []
    assert pending_of(redis_client, keys.frames, DECODER_GROUP, "crashed") == busy_before
    assert redis_client.xpending(keys.frames, DECODER_GROUP)["pending"] == 3


def test_default_idle_keeps_a_consumer_idle_less_than_an_hour(
    keys: StreamKeys, redis_client: redis.Redis, ctl
) -> None:
    fill(redis_client, keys.frames, DECODER_GROUP, 1)
    done(redis_client, keys.frames, DECODER_GROUP, "decoder-1")
    time.sleep(0.2)
    body = ctl("consumers", "prune", "--json").json()
    assert body["idle_s"] == 3600
    assert body["removed"] == []
    assert [(r["consumer"], r["reason"]) for r in body["kept"]] == [("decoder-1", "idle")]
    person = ctl("consumers", "prune", "--idle", "2h")
    assert person.code == 0, person.err
    assert "kept: idle" in person.out
    assert "< 2.0 h" in person.out
    assert "removed 0 consumers, kept 1" in person.out
    assert names(redis_client, keys.frames, DECODER_GROUP) == ["decoder-1"]


def test_dry_run_deletes_nothing(keys: StreamKeys, redis_client: redis.Redis, ctl) -> None:
    fill(redis_client, keys.frames, DECODER_GROUP, 5)
    done(redis_client, keys.frames, DECODER_GROUP, "gone-1")
    done(redis_client, keys.frames, DECODER_GROUP, "gone-2")
    take(redis_client, keys.frames, DECODER_GROUP, "holder", 1)
    before = names(redis_client, keys.frames, DECODER_GROUP)
    assert before == ["gone-1", "gone-2", "holder"]

    body = ctl("consumers", "--json", "prune", "--idle", "0", "--dry-run").json()
    assert body["dry_run"] is True
    assert [r["consumer"] for r in body["removed"]] == ["gone-1", "gone-2"]
    assert [(r["consumer"], r["reason"]) for r in body["kept"]] == [("holder", "pending")]
    assert names(redis_client, keys.frames, DECODER_GROUP) == before

    person = ctl("consumers", "prune", "--idle", "0", "--dry-run")
    assert person.code == 0, person.err
    assert "dry run: nothing deleted" in person.out
    assert "would remove 2 consumers, kept 1" in person.out
    assert "kept: 1 pending" in person.out
    assert names(redis_client, keys.frames, DECODER_GROUP) == before

    person = ctl("consumers", "prune", "--idle", "0")
    assert "removed 2 consumers, kept 1" in person.out
    assert names(redis_client, keys.frames, DECODER_GROUP) == ["holder"]


def test_the_script_judges_the_consumer_as_it_is_when_it_runs(
    keys: StreamKeys, redis_client: redis.Redis
) -> None:
    """Whatever the listing said: a consumer that read meanwhile is kept, its entries intact."""
    fill(redis_client, keys.frames, DECODER_GROUP, 6)
    for name in ("read-meanwhile", "woke-up", "deleted-meanwhile", "stale"):
        done(redis_client, keys.frames, DECODER_GROUP, name)
    time.sleep(0.6)
    listed = consumers.list_consumers(redis_client, keys)
    assert [(c.name, c.pending) for c in listed] == [
        ("deleted-meanwhile", 0),
        ("read-meanwhile", 0),
        ("stale", 0),
        ("woke-up", 0),
    ]
    assert all(c.idle_ms >= 500 for c in listed)

    taken = take(redis_client, keys.frames, DECODER_GROUP, "read-meanwhile", 1)
    done(redis_client, keys.frames, DECODER_GROUP, "woke-up")  # read and acknowledged
    redis_client.xgroup_delconsumer(keys.frames, DECODER_GROUP, "deleted-meanwhile")

    report = consumers.prune(redis_client, listed, 500, dry_run=False)
    verdicts = {r.consumer: (r.verdict, r.pending) for r in report.results}
    assert verdicts == {
        "deleted-meanwhile": (Verdict.GONE, 0),
        "read-meanwhile": (Verdict.PENDING, 1),
        "stale": (Verdict.REMOVED, 0),
        "woke-up": (Verdict.RECENT, 0),
    }
    assert names(redis_client, keys.frames, DECODER_GROUP) == ["read-meanwhile", "woke-up"]
    pending = pending_of(redis_client, keys.frames, DECODER_GROUP, "read-meanwhile")
    assert [entry_id for entry_id, _ in pending] == taken


def test_inactive_is_reported_when_the_server_gives_it() -> None:
    info = {"name": b"decoder-1", "pending": 2, "idle": 1500}
    older = consumers.consumer_from_info("gw:frames", "decoder", info)
    assert older.inactive_ms is None
    assert older.as_json() == {
        "stream": "gw:frames",
        "group": "decoder",
        "consumer": "decoder-1",
        "pending": 2,
        "idle_ms": 1500,
        "inactive_ms": None,
    }
    newer = consumers.consumer_from_info("gw:frames", "decoder", {**info, "inactive": 90_000})
    assert newer.as_json()["inactive_ms"] == 90_000


@pytest.mark.parametrize(
    "argv",
    [
        ("--idle", "soon"),
        ("--idle", "10x"),
        ("--idle", "1h30m"),
        ("--idle=-5",),
        ("--idle", ""),
        ("--idle", "1e3"),
    ],
)
def test_bad_idle_exits_2_naming_the_option(
    keys: StreamKeys, redis_client: redis.Redis, ctl, argv: tuple[str, ...]
) -> None:
    fill(redis_client, keys.frames, DECODER_GROUP, 1)
    done(redis_client, keys.frames, DECODER_GROUP, "decoder-1")
    result = ctl("consumers", "prune", *argv)
    assert result.code == 2
    assert result.out == ""
    assert "argument --idle: not a duration" in result.err
    assert names(redis_client, keys.frames, DECODER_GROUP) == ["decoder-1"]


def test_unknown_action_exits_2(keys: StreamKeys, ctl) -> None:
    result = ctl("consumers", "purge")
    assert result.code == 2
    assert "invalid choice" in result.err


@pytest.mark.parametrize("argv", [("consumers",), ("consumers", "prune", "--idle", "0")])
def test_unreachable_redis_exits_1(
    monkeypatch: pytest.MonkeyPatch, ctl, argv: tuple[str, ...]
) -> None:
    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    result = ctl(*argv)
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith("gatewayctl: cannot reach Redis at redis://:***@127.0.0.1:1/0")
    assert "hunter2" not in result.err
