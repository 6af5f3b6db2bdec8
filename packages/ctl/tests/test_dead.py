"""`gatewayctl dead list|show|requeue|drop` against the real Redis."""

from __future__ import annotations

import threading

import pytest
import redis

from gateway_common.entries import (
    DeadLetter,
    Record,
    decode_frame,
    encode,
)
from gateway_common.records import Rejection, decode_alp
from gateway_common.streams import ENTRY_FIELD, StreamKeys
from gateway_ctl import dead
from gateway_dash7 import D7Status, encode_unsolicited

pytestmark = pytest.mark.integration

RX = 1_767_225_600.25
UNKNOWN_FILE_ALP = encode_unsolicited(64, b"\x01\x02\x03", D7Status(bytes(range(1, 9))))


def decoder_letter(keys: StreamKeys, **detail: object) -> DeadLetter:
    """A dead letter exactly as the decoder writes one for an unknown file."""
    rejection = decode_alp("1-0", UNKNOWN_FILE_ALP, RX)
    assert isinstance(rejection, Rejection)
    return DeadLetter(
        reason=rejection.reason,
        stage="decoder",
        source_stream=keys.frames,
        source_id="1767225600250-0",
        raw=rejection.raw,
        failed_at=RX + 0.01,
        received_at=rejection.received_at,
        detail={**rejection.detail, **detail},
    )


def record() -> Record:
    return Record(
        "A1", "button", {"button_id": 1, "mask": 1, "buttons_state": 1}, 70, 57, RX, "5-0"
    )


def publisher_letter(keys: StreamKeys) -> DeadLetter:
    return DeadLetter(
        reason="broker refused: Not authorized (0x87)",
        stage="publisher",
        source_stream=keys.records,
        source_id="7-0",
        raw=encode(record()),
        failed_at=RX + 1,
        received_at=RX,
        attempts=5,
        detail={"device_id": "A1"},
    )


def add(client: redis.Redis, keys: StreamKeys, letter: DeadLetter) -> str:
    return client.xadd(keys.dead, {ENTRY_FIELD: encode(letter)}).decode()


def test_list_and_show(keys: StreamKeys, redis_client: redis.Redis, ctl) -> None:
    first = add(redis_client, keys, decoder_letter(keys))
    second = add(redis_client, keys, publisher_letter(keys))
    broken = redis_client.xadd(keys.dead, {ENTRY_FIELD: b"\xc1"}).decode()

    listing = ctl("dead", "list", "--json").json()
    assert listing["length"] == 3
    letters = listing["letters"]
    assert [letter["id"] for letter in letters] == [first, second, broken]
    assert letters[0]["stage"] == "decoder"
    assert letters[0]["reason"] == "unknown file id 64"
    assert letters[0]["received_at"] == RX
    assert letters[0]["raw_bytes"] == len(UNKNOWN_FILE_ALP)
    assert "raw_hex" not in letters[0]
    assert letters[1]["detail"] == {"device_id": "A1"}
    assert letters[1]["attempts"] == 5
    assert letters[2]["id"] == broken
    assert "not a msgpack entry" in letters[2]["error"]

    limited = ctl("dead", "list", "--json", "--limit", "1").json()
    assert limited["length"] == 3
    assert len(limited["letters"]) == 1

    shown = ctl("dead", "show", first, "--json").json()
    assert bytes.fromhex(shown["raw_hex"]) == UNKNOWN_FILE_ALP
    assert shown["source_id"] == "1767225600250-0"

    table = ctl("dead", "list")
    assert table.code == 0
    assert "unknown file id 64" in table.out
    assert "dead letters (3)" in table.out
    person = ctl("dead", "show", second)
    assert "broker refused" in person.out
    assert encode(record())[:4].hex(" ") in person.out

    missing = ctl("dead", "show", "1-0")
    assert missing.code == 1
    assert missing.err == f"gatewayctl: no dead letter 1-0 in {keys.dead}\n"


def test_requeue_a_decoder_letter_as_a_frame(
    keys: StreamKeys, redis_client: redis.Redis, ctl
) -> None:
    letter_id = add(redis_client, keys, decoder_letter(keys, counter=42))
    result = ctl("dead", "requeue", letter_id, "--json")
    assert result.code == 0, result.err
    (done,) = result.json()["requeued"]
    assert done["id"] == letter_id
    assert done["stream"] == keys.frames
    assert redis_client.xlen(keys.dead) == 0
    ((frame_id, fields),) = redis_client.xrange(keys.frames)
    assert frame_id.decode() == done["new_id"]
    frame = decode_frame(fields[ENTRY_FIELD])
    assert (frame.alp, frame.received_at, frame.counter) == (UNKNOWN_FILE_ALP, RX, 42)

    again = ctl("dead", "requeue", letter_id)
    assert again.code == 1
    assert "no dead letter" in again.out
    assert redis_client.xlen(keys.frames) == 1


def test_requeue_a_publisher_letter_as_its_record(
    keys: StreamKeys, redis_client: redis.Redis, ctl
) -> None:
    letter_id = add(redis_client, keys, publisher_letter(keys))
    result = ctl("dead", "requeue", letter_id)
    assert result.code == 0, result.err
    assert f"requeued {letter_id} -> {keys.records}" in result.out
    ((_id, fields),) = redis_client.xrange(keys.records)
    assert fields[ENTRY_FIELD] == encode(record())
    assert redis_client.xlen(keys.dead) == 0


def test_what_cannot_be_requeued_stays(keys: StreamKeys, redis_client: redis.Redis, ctl) -> None:
    unreadable_frame = DeadLetter(
        reason="undecodable entry: not a msgpack entry",
        stage="decoder",
        source_stream=keys.frames,
        source_id="3-0",
        raw=b"\xc1",
        failed_at=RX,
    )
    bad_id = add(redis_client, keys, unreadable_frame)
    good_id = add(redis_client, keys, decoder_letter(keys))
    result = ctl("dead", "requeue", "--all", "--json")
    assert result.code == 1
    body = result.json()
    assert [r["id"] for r in body["requeued"]] == [good_id]
    assert [r["id"] for r in body["failed"]] == [bad_id]
    assert "no frame to requeue" in body["failed"][0]["error"]
    assert [i.decode() for i, _ in redis_client.xrange(keys.dead)] == [bad_id]
    assert redis_client.xlen(keys.frames) == 1


def test_concurrent_requeues_move_each_letter_exactly_once(
    keys: StreamKeys, redis_url: str, redis_client: redis.Redis
) -> None:
    ids = [add(redis_client, keys, decoder_letter(keys, counter=i)) for i in range(30)]
    results: list[list[dead.RequeueResult]] = []

    def worker() -> None:
        client = redis.Redis.from_url(redis_url)
        try:
            results.append(dead.requeue(client, keys, list(ids)))
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    done = [r for batch in results for r in batch if r.error is None]
    assert sorted(r.dead_id for r in done) == sorted(ids)
    assert redis_client.xlen(keys.dead) == 0
    counters = sorted(
        decode_frame(fields[ENTRY_FIELD]).counter for _, fields in redis_client.xrange(keys.frames)
    )
    assert counters == list(range(30))


def test_drop(keys: StreamKeys, redis_client: redis.Redis, ctl) -> None:
    ids = [add(redis_client, keys, decoder_letter(keys)) for _ in range(4)]
    result = ctl("dead", "drop", ids[0], "--json")
    assert (result.code, result.json()) == (0, {"dropped": 1})
    partly = ctl("dead", "drop", ids[0], ids[1])
    assert partly.code == 1
    assert "dropped 1 dead letter" in partly.out
    assert "1 of the ids were not dead letters" in partly.err
    assert ctl("dead", "drop", "--all", "--json").json() == {"dropped": 2}
    assert redis_client.xlen(keys.dead) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ("dead", "requeue"),
        ("dead", "requeue", "--all", "1-0"),
        ("dead", "drop"),
        ("dead", "show", "not-an-id"),
        ("dead", "list", "--limit", "0"),
        ("dead", "frobnicate"),
    ],
)
def test_bad_arguments_exit_2(keys: StreamKeys, ctl, argv: tuple[str, ...]) -> None:
    result = ctl(*argv)
    assert result.code == 2
    assert result.out == ""
