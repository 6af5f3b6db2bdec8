"""When the batched acknowledgements are due (the writes themselves run in the integration
tests against the real Redis)."""

from __future__ import annotations

import time

import redis
from prometheus_client import CollectorRegistry

from gateway_common.entries import Record
from gateway_common.streams import StreamKeys
from gateway_publisher.metrics import PublisherMetrics
from gateway_publisher.outbox import Outbox
from gateway_publisher.record_source import RecordSource, StreamEntry
from gateway_publisher.registry import DeviceRegistry


def outbox(ack_batch: int, ack_delay_s: float) -> Outbox:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")  # not written to here
    return Outbox(
        RecordSource(client, StreamKeys("unit-outbox"), "unit"),
        DeviceRegistry(),
        PublisherMetrics(CollectorRegistry()),
        time.time,
        ack_batch=ack_batch,
        ack_delay_s=ack_delay_s,
    )


RECORD = Record("AB", "button", {"buttons_state": 1}, 50, 60, 1.0, "1-0")


def test_nothing_to_write_is_never_due() -> None:
    assert outbox(4, 0.01).due_in(time.monotonic()) is None


def test_acks_are_due_after_the_delay_or_when_a_batch_is_full() -> None:
    box = outbox(3, 0.5)
    box.ack("1-0", RECORD)
    now = time.monotonic()
    assert 0.4 < (box.due_in(now) or 0) <= 0.5
    assert box.due_in(now + 0.6) == 0
    box.ack("1-1", RECORD)
    assert (box.due_in(now) or 0) > 0
    box.ack("1-2", RECORD)
    assert box.due_in(now) == 0
    assert box.acks_waiting == 3


def test_a_dead_letter_is_due_at_once() -> None:
    box = outbox(100, 10.0)
    box.dead(StreamEntry("1-0", b"x"), "bad", "undecodable", None, 1)
    assert box.due_in(time.monotonic()) == 0
    assert box.acks_waiting == 0
