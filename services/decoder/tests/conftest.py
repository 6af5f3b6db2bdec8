"""Helpers for the decoder's integration tests: frames in, replicas in threads, streams out."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry

from gateway_common.entries import (
    DeadLetter,
    FrameEntry,
    Record,
    decode_dead_letter,
    decode_record,
    encode,
)
from gateway_common.lifecycle import StopSignal
from gateway_common.records import decode_entry
from gateway_common.redis_conn import ensure_group
from gateway_common.streams import DECODER_GROUP, StreamKeys
from gateway_decoder.decoder import run
from gateway_decoder.settings import DecoderSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import redis


@dataclass
class RunningDecoder:
    settings: DecoderSettings
    stop: StopSignal
    registry: CollectorRegistry
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)

    def halt(self) -> None:
        self.stop.set("test")
        self.thread.join(10)
        assert not self.thread.is_alive(), "decoder did not stop"
        assert not self.errors, self.errors

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@dataclass
class Streams:
    client: redis.Redis
    keys: StreamKeys

    def add_frames(self, alps: list[bytes], received_at: float = 1_700_000_000.5) -> list[str]:
        pipe = self.client.pipeline(transaction=False)
        for counter, alp in enumerate(alps):
            entry = FrameEntry(alp=alp, received_at=received_at + counter, counter=counter % 256)
            pipe.xadd(self.keys.frames, {b"d": encode(entry)})
        return [entry_id.decode() for entry_id in pipe.execute()]

    def add_raw(self, fields: dict[bytes, bytes]) -> str:
        entry_id: bytes = self.client.xadd(self.keys.frames, fields)
        return entry_id.decode()

    def records(self) -> list[Record]:
        rows = self.client.xrange(self.keys.records)
        return [decode_record(fields[b"d"]) for _, fields in rows]

    def dead(self) -> list[DeadLetter]:
        rows = self.client.xrange(self.keys.dead)
        return [decode_dead_letter(fields[b"d"]) for _, fields in rows]

    def outputs(self) -> int:
        return int(self.client.xlen(self.keys.records)) + int(self.client.xlen(self.keys.dead))

    def pending(self) -> int:
        return int(self.client.xpending(self.keys.frames, DECODER_GROUP)["pending"])


@pytest.fixture
def streams(redis_client, stream_prefix) -> Streams:
    keys = StreamKeys(stream_prefix)
    ensure_group(redis_client, keys.frames, DECODER_GROUP)  # as a deployed gateway would have it
    return Streams(redis_client, keys)


@pytest.fixture
def start_decoder(redis_url, stream_prefix) -> Iterator[Callable[..., RunningDecoder]]:
    """Start decoder replicas in threads (`run(settings, stop, registry)`); stopped at the end."""
    started: list[RunningDecoder] = []

    def start(
        consumer: str = "replica-a",
        decode: Callable[..., object] = decode_entry,
        **overrides: object,
    ) -> RunningDecoder:
        values: dict[str, object] = {
            "redis_url": redis_url,
            "stream_prefix": stream_prefix,
            "consumer_name": consumer,
            "block_ms": 50,
        }
        values.update(overrides)
        settings = DecoderSettings(**values)  # type: ignore[arg-type]
        stop = StopSignal()
        registry = CollectorRegistry()
        running = RunningDecoder(settings, stop, registry, threading.Thread())

        def target() -> None:
            try:
                run(settings, stop, registry, decode=decode)  # type: ignore[arg-type]
            except BaseException as exc:
                running.errors.append(exc)
                raise

        running.thread = threading.Thread(target=target, name=f"decoder-{consumer}", daemon=True)
        running.thread.start()
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.halt()
