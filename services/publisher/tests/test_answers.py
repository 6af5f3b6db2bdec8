"""Which broker answers deliver a record (the broker's side runs in the integration tests)."""

from __future__ import annotations

import time
from collections import deque

import redis
from prometheus_client import CollectorRegistry

from gateway_common.entries import Record
from gateway_common.streams import StreamKeys
from gateway_publisher.answers import Answers, put_back
from gateway_publisher.inflight import InFlight
from gateway_publisher.intake import Ready
from gateway_publisher.metrics import PublisherMetrics
from gateway_publisher.mqtt_link import PublishOutcome
from gateway_publisher.outbox import Outbox
from gateway_publisher.record_source import RecordSource, StreamEntry
from gateway_publisher.registry import DeviceRegistry

OK, NOT_AUTHORIZED = 0, 0x87


def ready(entry_id: str, device: str) -> Ready:
    record = Record(device, "button", {"buttons_state": 1}, 50, 60, 1.0, "1-0")
    return Ready(StreamEntry(entry_id, b"x"), record, b"", None)  # type: ignore[arg-type]


def answer(mid: int, code: int) -> PublishOutcome:
    return PublishOutcome(1, mid, code, "Success" if code < 0x80 else "Not authorized")


class Rig:
    def __init__(self, max_attempts: int = 3) -> None:
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")  # not written to here
        self.registry = DeviceRegistry()
        self.outbox = Outbox(
            RecordSource(client, StreamKeys("unit-answers"), "unit"),
            self.registry,
            PublisherMetrics(CollectorRegistry()),
            time.time,
        )
        self.inflight = InFlight()
        self.answers = Answers(self.inflight, self.registry, self.outbox, max_attempts)
        self.queue: deque[Ready] = deque()

    def birth(self, mid: int, device: str) -> None:
        self.inflight.add_birth(mid, device)
        self.registry.mark_born(device)

    def handle(self, mid: int, code: int) -> str | None:
        delivered = self.answers.handle(answer(mid, code), self.queue)
        return delivered.entry.entry_id if delivered else None

    def queued(self) -> list[str]:
        return [r.entry.entry_id for r in self.queue]


def test_ddata_behind_a_refused_dbirth_go_back_in_order_and_their_answers_are_ignored() -> None:
    rig = Rig()
    rig.birth(1, "A")
    rig.inflight.add_data(2, ready("10-0", "A"))
    rig.inflight.add_data(3, ready("10-1", "A"))
    rig.birth(4, "B")
    rig.inflight.add_data(5, ready("10-2", "B"))
    rig.queue.append(ready("11-0", "A"))  # read, not published yet

    assert rig.handle(1, NOT_AUTHORIZED) is None
    assert rig.queued() == ["10-0", "10-1", "11-0"]
    assert rig.registry.needs_birth("A")  # a new DBIRTH goes first
    assert rig.inflight.entry_ids() == {"10-2"}
    assert len(rig.inflight) == 4  # still in the broker's window until answered
    assert rig.handle(2, OK) is None
    assert rig.handle(3, OK) is None
    assert rig.handle(4, OK) is None  # the other device's DBIRTH was accepted...
    assert rig.handle(5, OK) == "10-2"  # ...so its DDATA is delivered
    assert len(rig.inflight) == 0


def test_a_ddata_is_delivered_only_once_its_dbirth_is_accepted() -> None:
    rig = Rig()
    rig.birth(1, "A")
    rig.inflight.add_data(2, ready("10-0", "A"))
    # An answer before the DBIRTH's (a broker breaking MQTT's order): not delivered.
    assert rig.handle(2, OK) is None
    assert rig.queued() == ["10-0"]
    rig.inflight.add_data(3, rig.queue.popleft())
    assert rig.handle(1, OK) is None
    assert rig.handle(3, OK) == "10-0"


def test_a_dbirth_refused_max_attempts_times_dead_letters_the_ddata_behind_it() -> None:
    rig = Rig(max_attempts=2)
    for attempt, mid in enumerate((1, 3), start=1):
        rig.birth(mid, "A")
        rig.inflight.add_data(mid + 1, rig.queue.popleft() if rig.queue else ready("10-0", "A"))
        rig.handle(mid, NOT_AUTHORIZED)
        assert rig.queued() == (["10-0"] if attempt < 2 else [])
    assert rig.outbox.ids() == {"10-0"}  # on its way to the dead letters


def test_put_back_keeps_stream_order() -> None:
    queue = deque([ready("5-0", "A"), ready("12-3", "A"), ready("100-0", "A")])
    for entry_id in ("12-1", "1-0", "200-0", "12-10"):
        put_back(queue, ready(entry_id, "A"))
    assert [r.entry.entry_id for r in queue] == [
        "1-0",
        "5-0",
        "12-1",
        "12-3",
        "12-10",
        "100-0",
        "200-0",
    ]
