"""The decoder trims `{p}:frames` behind every consumer group and `{p}:dead` by age."""

from __future__ import annotations

import time

import pytest

from gateway_common.streams import DECODER_GROUP
from gateway_dash7 import ButtonFile, D7Status, encode_unsolicited
from gateway_devkit.polling import wait_until

from .test_decoder_redis import FailingDecode

pytestmark = pytest.mark.integration

UID = bytes.fromhex("323636300039004C")
DAY_MS = 86_400_000


def _button(n: int) -> bytes:
    return encode_unsolicited(51, ButtonFile(n % 256, 1, n % 2).encode(), D7Status(address=UID))


def _ids(client, stream: str) -> list[str]:
    return [entry_id.decode() for entry_id, _ in client.xrange(stream)]


def test_decoded_frames_are_trimmed_behind_the_oldest_pending_one(streams, start_decoder):
    ids = streams.add_frames([_button(n) for n in range(6)])
    stuck = ids[3]  # keeps failing: stays pending (max_attempts is never reached)
    decoder = start_decoder(
        decode=FailingDecode({stuck}),
        max_attempts=1000,
        frames_retention_s=0,
        trim_interval_s=0.05,
    )
    assert wait_until(lambda: streams.outputs() == 5)
    assert wait_until(lambda: _ids(streams.client, streams.keys.frames) == ids[3:])
    time.sleep(0.2)  # several more trimming rounds: the pending frame and those after it stay
    assert _ids(streams.client, streams.keys.frames) == ids[3:]
    assert streams.pending() == 1
    trimmed = decoder.metric("gateway_stream_trimmed_entries_total", stream=streams.keys.frames)
    assert trimmed == 3


def test_frames_younger_than_the_retention_are_kept(streams, start_decoder):
    ids = streams.add_frames([_button(n) for n in range(4)])
    start_decoder(trim_interval_s=0.05)  # default retention: 7 days
    assert wait_until(lambda: streams.outputs() == 4 and streams.pending() == 0)
    time.sleep(0.2)
    assert _ids(streams.client, streams.keys.frames) == ids


def test_a_group_that_has_not_read_holds_trimming_back(streams, start_decoder):
    streams.client.xgroup_create(streams.keys.frames, "replay", id="0")
    ids = streams.add_frames([_button(n) for n in range(3)])
    start_decoder(frames_retention_s=0, trim_interval_s=0.05)
    assert wait_until(lambda: streams.outputs() == 3 and streams.pending() == 0)
    time.sleep(0.2)
    assert _ids(streams.client, streams.keys.frames) == ids
    info = {g["name"].decode(): g for g in streams.client.xinfo_groups(streams.keys.frames)}
    assert set(info) == {DECODER_GROUP, "replay"}


def test_dead_letters_are_trimmed_by_age(streams, start_decoder):
    now_ms = int(time.time() * 1000)
    dead = streams.keys.dead
    old = [
        streams.client.xadd(dead, {b"d": b"x"}, id=f"{now_ms - 3 * DAY_MS}-{i}").decode()
        for i in range(3)
    ]
    recent = streams.client.xadd(dead, {b"d": b"x"}, id=f"{now_ms - DAY_MS}-0").decode()
    assert len(old) == 3
    decoder = start_decoder(dead_retention_s=2 * 86_400, trim_interval_s=0.05)
    assert wait_until(lambda: _ids(streams.client, dead) == [recent])
    assert decoder.metric("gateway_stream_trimmed_entries_total", stream=dead) == 3
