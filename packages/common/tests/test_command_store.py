"""Commands in the real Redis: submission (queued with its stream entry, or rejected), atomic
transitions with their indexes, races between services, and validation against the registry."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from gateway_common.command_metrics import CommandMetrics
from gateway_common.command_requests import request_command
from gateway_common.command_store import CommandStore, from_fields, to_fields
from gateway_common.commands import (
    Answered,
    Command,
    CommandState,
    Expired,
    Reported,
    Sent,
)
from gateway_common.devices import DeviceEntry
from gateway_common.entries import decode_command
from gateway_common.streams import ENTRY_FIELD, INGEST_GROUP, StreamKeys
from gateway_common.summary import LogSummary

pytestmark = pytest.mark.integration

T0 = 1_764_000_000.0
DEVICE = "323636300039004C"


@pytest.fixture
def store(redis_client: redis.Redis, stream_prefix: str) -> CommandStore:
    return CommandStore(redis_client, StreamKeys(stream_prefix))


def register(client: redis.Redis, keys: StreamKeys, device: str = DEVICE, **extra: object) -> None:
    entry = DeviceEntry(T0, T0, 3, 70, **extra)  # type: ignore[arg-type]
    client.hset(keys.devices, device, entry.to_bytes())


def test_fields_round_trip() -> None:
    command = Command.queued(
        "3", DEVICE, 600, enabled=False, source="mqtt", at=T0, timeout_s=1860.5
    )
    assert from_fields({k.encode(): v.encode() for k, v in to_fields(command).items()}) == command
    with pytest.raises(ValueError, match="unreadable command"):
        from_fields({b"id": b"1", b"state": b"lost"})


def test_a_queued_command_is_stored_indexed_and_streamed(
    store: CommandStore, redis_client: redis.Redis
) -> None:
    keys = store.keys
    command = Command.queued(
        store.next_id(), DEVICE, 600, enabled=True, source="gatewayctl", at=T0, timeout_s=1860
    )
    stored = store.submit(command)
    assert stored.entry_id is not None
    assert store.get(command.id) == stored
    ((entry_id, entry_fields),) = redis_client.xrange(keys.commands)
    assert entry_id.decode() == stored.entry_id
    entry = decode_command(entry_fields[ENTRY_FIELD])
    assert (entry.command_id, entry.device_id, entry.interval_s, entry.enabled) == (
        command.id,
        DEVICE,
        600,
        True,
    )
    assert store.states()["queued"] == 1
    assert store.entered()["queued"] == 1
    assert store.open_ids() == [command.id]
    assert store.open_ids(due_by=T0 + 1859) == []
    assert store.open_ids(due_by=T0 + 1860) == [command.id]
    assert store.listing(10) == (1, [stored])
    with pytest.raises(ValueError, match="exists already"):
        store.submit(command)


def test_transitions_keep_every_index(store: CommandStore, redis_client: redis.Redis) -> None:
    keys = store.keys
    redis_client.xgroup_create(keys.commands, INGEST_GROUP, id="0", mkstream=True)
    command = store.submit(
        Command.queued(
            store.next_id(), DEVICE, 600, enabled=True, source="mqtt", at=T0, timeout_s=100
        )
    )
    redis_client.xreadgroup(INGEST_GROUP, "ingest", {keys.commands: ">"})
    assert redis_client.xpending(keys.commands, INGEST_GROUP)["pending"] == 1

    sent = store.apply(command.id, Sent(T0 + 1, tag=42))
    assert sent is not None
    assert sent.entered is CommandState.SENT
    assert store.active(DEVICE) == command.id
    assert store.tag_owner(42) == command.id
    assert redis_client.zscore(keys.commands_open, command.id) == T0 + 101

    acked = store.apply(command.id, Answered(T0 + 5, end_of_procedure=True, error=False))
    assert acked is not None
    assert acked.entered is CommandState.ACKNOWLEDGED
    assert store.active(DEVICE) == command.id

    done = store.apply(command.id, Reported(T0 + 6, 600, enabled=True))
    assert done is not None
    assert done.after.state is CommandState.CONFIRMED
    assert store.active(DEVICE) is None
    assert store.open_ids() == []
    assert store.tag_owner(42) == command.id  # kept: a late answer still finds its command
    assert redis_client.xpending(keys.commands, INGEST_GROUP)["pending"] == 0
    assert "deadline" not in {k.decode() for k in redis_client.hkeys(keys.command(command.id))}
    states = store.states()
    assert (states["queued"], states["sent"], states["acknowledged"], states["confirmed"]) == (
        0,
        0,
        0,
        1,
    )
    assert store.entered()["sent"] == store.entered()["confirmed"] == 1
    assert store.apply(command.id, Expired(T0 + 10_000)) is None  # final
    assert store.apply("nope", Expired(T0)) is None


def _race(*moves: Callable[[], object]) -> list[object]:
    """Run the moves at once, one thread each; their results."""
    results: list[object] = []
    barrier = threading.Barrier(len(moves))

    def run(move: Callable[[], object]) -> None:
        barrier.wait()
        results.append(move())

    threads = [threading.Thread(target=run, args=(move,)) for move in moves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_racing_services_end_a_command_once(redis_url: str, stream_prefix: str) -> None:
    keys = StreamKeys(stream_prefix)
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    stores = [CommandStore(c, keys) for c in clients]
    try:
        for round_ in range(20):
            command = stores[0].submit(
                Command.queued(
                    stores[0].next_id(),
                    DEVICE,
                    600,
                    enabled=True,
                    source="mqtt",
                    at=T0,
                    timeout_s=10,
                )
            )
            stores[0].apply(command.id, Sent(T0 + 1, tag=round_))
            results = _race(
                lambda s=stores[0], c=command.id: s.apply(c, Expired(T0 + 100)),
                lambda s=stores[1], c=command.id: s.apply(c, Reported(T0 + 5, 600, enabled=True)),
            )
            assert sum(r is not None for r in results) == 1
            final = stores[0].get(command.id)
            assert final is not None
            assert final.state in (CommandState.EXPIRED, CommandState.CONFIRMED)
        states = stores[0].states()
        assert states["expired"] + states["confirmed"] == 20
        assert states["sent"] == 0
    finally:
        for client in clients:
            client.close()


def test_requests_are_validated_against_the_registry(
    store: CommandStore, redis_client: redis.Redis
) -> None:
    keys = store.keys
    register(redis_client, keys, interval_s=600.0, enabled=False)
    register(redis_client, keys, "ABCD")

    def request(device: str, interval: object, enabled: bool | None = None) -> Command:
        return request_command(
            store,
            redis_client,
            device_id=device,
            interval_s=interval,
            enabled=enabled,
            source="gatewayctl",
            now=T0,
        )

    ok = request(DEVICE, 300)
    assert (ok.state, ok.values, ok.timeout_s) == (CommandState.QUEUED, (300, False), 1860)
    assert request(DEVICE, None, enabled=True).values == (600, True)
    assert request("ABCD", 60).timeout_s == 3 * 600 + 60  # the default interval until reported
    for device, interval, reason in (
        ("FFFF", 300, "device FFFF is not in the registry"),
        (DEVICE, 5, "interval 5 s is outside 10 ... 86400 s"),
        (DEVICE, 100_000, "outside"),
        (DEVICE, "600", "whole number"),
        ("ABCD", None, "never reported its interval"),
        ("not/hex", 60, "not a DEVICE_ID"),
    ):
        refused = request(device, interval)
        assert refused.state is CommandState.REJECTED, device
        assert reason in refused.reason
        assert refused.entry_id is None
    assert redis_client.xlen(keys.commands) == 3  # only the accepted ones reach the stream
    assert store.states()["rejected"] == 6
    assert store.listing(100)[0] == 9
    with_timeout = request_command(
        store,
        redis_client,
        device_id=DEVICE,
        interval_s=30,
        enabled=None,
        source="mqtt",
        now=T0,
        timeout_s=45,
    )
    assert with_timeout.timeout_s == 45
    assert with_timeout.deadline == T0 + 45


def test_command_metrics_expose_the_totals() -> None:
    registry = CollectorRegistry()
    metrics = CommandMetrics(registry)
    metrics.set_totals({"queued": 3, "rejected": 1})
    metrics.in_flight.set(1)
    text = generate_latest(registry).decode()
    assert 'gateway_commands_total{state="queued"} 3.0' in text
    assert 'gateway_commands_total{state="confirmed"} 0.0' in text
    assert "gateway_commands_in_flight 1.0" in text
    metrics.set_totals({"queued": 2})  # never down
    assert registry.get_sample_value("gateway_commands_total", {"state": "queued"}) == 3
    fields = LogSummary(registry).fields()
    assert fields["commands"]["queued"] == 3
    assert fields["commands_in_flight"] == 1
