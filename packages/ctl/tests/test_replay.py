"""`gatewayctl replay`: archived frames decoded again onto the records stream."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis

from gateway_common.entries import FrameEntry, Record, decode_record, encode
from gateway_common.records import decode_alp
from gateway_common.streams import ENTRY_FIELD, StreamKeys
from gateway_dash7 import ButtonFile, D7Status, EnergyFile, encode_unsolicited

pytestmark = pytest.mark.integration

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
A = bytes.fromhex("0102030405060708")
B = bytes.fromhex("1112131415161718")
ENERGY = EnergyFile((1, 2, 3), (4, 5, 6), (7, 8, 9), (230, 231, 232))


def alp_of(address: bytes, file: str, seq: int) -> bytes:
    status = D7Status(address, link_budget=60 + seq, sequence=seq)
    if file == "energy":
        return encode_unsolicited(52, ENERGY.encode(), status)
    if file == "button":
        return encode_unsolicited(51, ButtonFile(1, 1, seq % 2).encode(), status)
    return encode_unsolicited(64, b"\x00", status)  # unknown file


@pytest.fixture
def archive(keys: StreamKeys, redis_client: redis.Redis) -> dict[str, Record | None]:
    """Frames at T0 + 0, 10, ..., 90 s: alternating devices, one unknown file at +50 s."""
    expected: dict[str, Record | None] = {}
    for i in range(10):
        ms = T0_MS + i * 10_000
        alp = alp_of(
            A if i % 2 == 0 else B, "unknown" if i == 5 else ("energy", "button")[i % 2], i
        )
        frame_id = f"{ms}-0"
        redis_client.xadd(
            keys.frames, {ENTRY_FIELD: encode(FrameEntry(alp, ms / 1000, i))}, id=frame_id
        )
        outcome = decode_alp(frame_id, alp, ms / 1000)
        expected[frame_id] = outcome if isinstance(outcome, Record) else None
    return expected


def records(client: redis.Redis, keys: StreamKeys) -> list[Record]:
    return [decode_record(fields[ENTRY_FIELD]) for _id, fields in client.xrange(keys.records)]


def test_replay_a_time_range(
    keys: StreamKeys, redis_client: redis.Redis, ctl, archive: dict[str, Record | None]
) -> None:
    since = datetime.fromtimestamp((T0_MS + 20_000) / 1000, tz=UTC).isoformat()
    until = str((T0_MS + 60_000) / 1000)  # epoch seconds, inclusive
    result = ctl("replay", "--since", since, "--until", until, "--json")
    assert result.code == 0, result.err
    report = result.json()
    window = [f"{T0_MS + s * 1000}-0" for s in (20, 30, 40, 50, 60)]
    assert report["scanned"] == 5
    assert report["replayed"] == 4
    assert report["undecodable"] == [
        {"frame_id": f"{T0_MS + 50_000}-0", "reason": "unknown file id 64"}
    ]
    assert records(redis_client, keys) == [archive[f] for f in window if archive[f] is not None]
    new_ids = [i.decode() for i, _ in redis_client.xrange(keys.records)]
    assert [r["record_id"] for r in report["records"]] == new_ids
    assert redis_client.xlen(keys.dead) == 0  # not dead-lettered again


def test_one_device_only(
    keys: StreamKeys, redis_client: redis.Redis, ctl, archive: dict[str, Record | None]
) -> None:
    result = ctl("replay", "--since", str(T0_MS / 1000), "--device", "1112131415161718")
    assert result.code == 0, result.err
    assert "replayed 4 of 10 frames (5 of other devices), 1 undecodable" in result.out
    got = records(redis_client, keys)
    assert [r.device_id for r in got] == ["1112131415161718"] * 4
    assert [r.received_at * 1000 for r in got] == [T0_MS + s * 1000 for s in (10, 30, 70, 90)]


def test_dry_run_appends_nothing(
    keys: StreamKeys, redis_client: redis.Redis, ctl, archive: dict[str, Record | None]
) -> None:
    result = ctl("replay", "--since", "2026-01-01T00:01:00Z", "--dry-run")
    assert result.code == 0, result.err
    assert "would replay 4 of 4 frames" in result.out
    assert f"{T0_MS + 90_000}-0" in result.out
    assert redis_client.xlen(keys.records) == 0
    as_json = ctl("replay", "--since", "2026-01-01T00:01:00", "--dry-run", "--json").json()
    assert as_json["dry_run"] is True
    assert [r["record_id"] for r in as_json["records"]] == [None] * 4


def test_frames_older_than_the_archive_are_reported(
    keys: StreamKeys, redis_client: redis.Redis, ctl, archive: dict[str, Record | None]
) -> None:
    result = ctl("replay", "--since", str(T0_MS / 1000 - 3600), "--until", str(T0_MS / 1000 - 1))
    assert result.code == 0
    assert "replayed 0 of 0 frames" in result.out
    assert "the archive starts at 2026-01-01T00:00:00.000Z" in result.out


def test_empty_archive(keys: StreamKeys, ctl) -> None:
    result = ctl("replay", "--since", "0")
    assert result.code == 0
    assert "the frame archive is empty" in result.out


@pytest.mark.parametrize(
    "argv",
    [
        ("replay",),
        ("replay", "--since", "yesterday"),
        ("replay", "--since", "2026-01-02", "--until", "2026-01-01"),
        ("replay", "--since", "-5"),
    ],
)
def test_bad_arguments_exit_2(keys: StreamKeys, ctl, argv: tuple[str, ...]) -> None:
    assert ctl(*argv).code == 2


def test_frames_accepted_late_are_selected_by_their_receive_time(
    keys: StreamKeys, redis_client: redis.Redis, ctl
) -> None:
    """Frames ingest held through a Redis outage get stream ids long after they were received."""
    received_ms = T0_MS + 5_000
    late_id = f"{T0_MS + 600_000}-0"  # accepted ten minutes later
    alp = alp_of(A, "energy", 1)
    redis_client.xadd(
        keys.frames, {ENTRY_FIELD: encode(FrameEntry(alp, received_ms / 1000, 1))}, id=late_id
    )
    inside = ctl("replay", "--since", str(T0_MS / 1000), "--until", str((T0_MS + 10_000) / 1000),
                 "--json", "--dry-run")  # fmt: skip
    assert inside.code == 0, inside.err
    assert [r["frame_id"] for r in inside.json()["records"]] == [late_id]
    after = ctl("replay", "--since", str((T0_MS + 500_000) / 1000), "--json", "--dry-run")
    assert after.json()["records"] == []


def test_a_frame_archived_twice_is_replayed_once(
    keys: StreamKeys, redis_client: redis.Redis, ctl
) -> None:
    """A requeued dead letter, or a batch ingest wrote twice: the same reading, replayed once."""
    entry = encode(FrameEntry(alp_of(A, "energy", 1), (T0_MS + 1_000) / 1000, 1))
    redis_client.xadd(keys.frames, {ENTRY_FIELD: entry}, id=f"{T0_MS + 1_000}-0")
    redis_client.xadd(keys.frames, {ENTRY_FIELD: entry}, id=f"{T0_MS + 90_000}-0")
    result = ctl("replay", "--since", str(T0_MS / 1000), "--json")
    assert result.code == 0, result.err
    report = result.json()
    assert (report["replayed"], report["copies"]) == (1, 1)
    assert redis_client.xlen(keys.records) == 1
