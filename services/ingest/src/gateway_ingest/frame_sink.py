"""Frames to the Redis stream: the only module of ingest that talks to Redis.

The serial reader hands frames to `FrameSink.put`, which never blocks: frames wait in a bounded
in-memory buffer and a writer thread appends them to `{p}:frames` in order, a batch per round trip
(MULTI/EXEC, so a batch is written whole or not at all). While Redis is unreachable the writer
retries with capped backoff and the buffer fills; beyond `buffer_frames` frames the **oldest** are
dropped (counted, logged): for cumulative meter readings the newest frames carry the
most value, and the stream stays in order. Delivery to Redis is at least once: if the connection
drops after EXEC reached Redis but before its reply, that batch is written again on retry.

The modem counter state after each frame (`CounterState`, every frame type) rides along: each
batch's MULTI/EXEC also writes, to `{p}:ingest:modem`, the state after the last frame of the
batch, and a state noted after the last queued frame (a LOGGING frame, say) is written on its own
once every frame before it is written. So the persisted state never runs ahead of the frames
Redis accepted: the next ingest counts frames read but never accepted (still buffered when this
one stopped or was killed) as a counter gap, together with those sent while no ingest listened.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from time import monotonic
from time import time as wall_clock
from typing import TYPE_CHECKING, Any, cast

import redis

from gateway_common.aof_compaction import rewrite_once_after_start
from gateway_common.backoff import Backoff
from gateway_common.entries import FrameEntry, encode
from gateway_common.health import Health
from gateway_common.logs import get_logger
from gateway_common.redis_refusals import describe, refusal_of
from gateway_common.streams import ENTRY_FIELD
from gateway_dash7 import COUNTER_VALUES, CounterPosition

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway_ingest.metrics import IngestMetrics

__all__ = ["CounterState", "FrameSink", "load_counter_state"]

_JOIN_MARGIN_S = 1.0
_WRITE_ERRORS: tuple[type[Exception], ...] = (redis.RedisError,)
"""Every error redis-py raises: the batch stays buffered and is written again later."""

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CounterState:
    """Where the modem counter stood after a frame, and when that frame was received: persisted
    so that the next ingest resumes its counter tracker from it (gateway_dash7.counter)."""

    counter: int
    after_reboot: bool
    """The frame was REBOOTED: the next one may restart at 1."""
    seen_at: float
    """When the frame was received (Unix time, s)."""

    @classmethod
    def at(cls, position: CounterPosition, seen_at: float) -> CounterState:
        return cls(position.counter, position.after_reboot, seen_at)

    @property
    def position(self) -> CounterPosition:
        return CounterPosition(self.counter, self.after_reboot)


def _state_fields(state: CounterState) -> dict[str, str | int]:
    return {
        "counter": state.counter,
        "after_reboot": int(state.after_reboot),
        "seen_at": repr(state.seen_at),
    }


def load_counter_state(client: redis.Redis, key: str) -> CounterState | None:
    """The modem counter state the last ingest persisted; None if absent, unreadable or away."""
    try:
        raw: Any = client.hgetall(key)
    except _WRITE_ERRORS as exc:
        log.warning("counter_state_unavailable", key=key, error=str(exc))
        return None
    if not raw:
        return None
    try:
        state = CounterState(
            counter=int(raw[b"counter"]),
            after_reboot=bool(int(raw[b"after_reboot"])),
            seen_at=float(raw[b"seen_at"]),
        )
    except (KeyError, ValueError) as exc:
        log.warning("counter_state_unreadable", key=key, error=repr(exc))
        return None
    if not 0 <= state.counter < COUNTER_VALUES:
        log.warning("counter_state_unreadable", key=key, counter=state.counter)
        return None
    return state


@dataclass(slots=True)
class _Queued:
    data: bytes
    state: CounterState | None
    """The counter state after this frame and any non-ALP frames that followed it."""
    received_at: float
    """The frame's receive time (epoch seconds), for the hand-off histogram."""


class FrameSink:
    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        metrics: IngestMetrics,
        *,
        buffer_frames: int,
        batch_frames: int,
        backoff_max_s: float,
        health: Health | None = None,
        state_key: str | None = None,
        clock: Callable[[], float] = wall_clock,
    ) -> None:
        self._health = health if health is not None else Health("ingest")
        self._clock = clock
        """The receive times' clock (the wall clock), for the hand-off histogram."""
        self._client = client
        self._stream = stream
        self._state_key = state_key
        self._metrics = metrics
        self._capacity = buffer_frames
        self._batch_frames = batch_frames
        self._backoff = Backoff(initial_s=0.05, max_s=backoff_max_s)
        self._queue: deque[_Queued] = deque()
        self._loose_state: CounterState | None = None
        """A state noted when no frame was queued: written once the frames before it are."""
        self._in_flight = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._deadline = float("inf")
        self._wake = threading.Event()
        self._overflowing = False
        self._overflow_dropped = 0
        self._failing = False
        self._aof_settled = False
        """Redis rewrote its AOF since it started (gateway_common.aof_compaction); checked after
        the first write, and again after Redis was away."""
        self._thread = threading.Thread(target=self._run, name="frame-sink", daemon=True)

    @property
    def buffered(self) -> int:
        """Frames read but not yet accepted by Redis."""
        with self._cond:
            return len(self._queue) + self._in_flight

    def start(self) -> None:
        self._thread.start()

    def put(self, entry: FrameEntry, state: CounterState | None = None) -> None:
        """Queue one frame for the stream; never blocks on Redis.

        `state` is the modem counter state right after this frame, persisted with it.
        """
        data = encode(entry)
        if self._state_key is None:
            state = None
        with self._cond:
            self._queue.append(_Queued(data, state, entry.received_at))
            if state is not None:
                self._loose_state = None  # superseded
            self._enforce_capacity()
            self._metrics.buffered_frames.set(len(self._queue) + self._in_flight)
            self._cond.notify()

    def note_state(self, state: CounterState) -> None:
        """The counter state after a frame that is not written to the stream; never blocks."""
        if self._state_key is None:
            return
        with self._cond:
            if self._queue:
                self._queue[-1].state = state
            else:
                self._loose_state = state
                self._cond.notify()

    def stop(self, flush_timeout_s: float) -> int:
        """Write what is buffered (for at most `flush_timeout_s`), stop; return frames left."""
        with self._cond:
            self._stopping = True
            self._deadline = monotonic() + flush_timeout_s
            self._cond.notify()
        self._wake.set()
        if self._thread.is_alive():
            # A write in progress can outlast the deadline by up to the socket timeout.
            self._thread.join(flush_timeout_s + _JOIN_MARGIN_S)
        with self._cond:
            left = len(self._queue) + self._in_flight
            self._metrics.buffered_frames.set(left)
        if left:
            self._metrics.dropped_frames.labels(reason="unflushed").inc(left)
            log.error("frames_unflushed", frames=left, stream=self._stream)
        return left

    def _enforce_capacity(self) -> None:
        """Drop the oldest queued frames beyond capacity (caller holds the lock).

        Frames of a batch being written are not counted: if the write fails they go back to the
        front of the queue, and are then the oldest to drop. So the buffer holds at most
        `buffer_frames` frames, plus one batch while a write is in progress.
        """
        dropped = 0
        while len(self._queue) > self._capacity:
            self._queue.popleft()
            dropped += 1
        if not dropped:
            return
        self._metrics.dropped_frames.labels(reason="buffer_full").inc(dropped)
        self._overflow_dropped += dropped
        if not self._overflowing:
            self._overflowing = True
            log.warning("buffer_full_dropping_oldest", capacity=self._capacity, stream=self._stream)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and self._loose_state is None and not self._stopping:
                    self._cond.wait()
                idle = not self._queue and self._loose_state is None
                if idle or monotonic() >= self._deadline:
                    return
                batch = [
                    self._queue.popleft() for _ in range(min(self._batch_frames, len(self._queue)))
                ]
                loose = None
                if not batch:  # only a counter state to write
                    loose, self._loose_state = self._loose_state, None
                self._in_flight = len(batch)
            state = next((q.state for q in reversed(batch) if q.state is not None), loose)
            if self._write([q.data for q in batch], state):
                accepted_at = self._clock()
                for queued in batch:
                    # A wall-clock step back would make it negative: counted as no wait.
                    self._metrics.handoff_seconds.observe(
                        max(0.0, accepted_at - queued.received_at)
                    )
                self._written(len(batch))
            else:
                self._requeue(batch, loose)
                delay = min(self._backoff.next_delay(), max(0.0, self._deadline - monotonic()))
                if self._wake.wait(delay):
                    self._wake.clear()  # a stop request: try once more right away

    def _write(self, batch: list[bytes], state: CounterState | None) -> bool:
        try:
            with self._client.pipeline(transaction=True) as pipe:
                for data in batch:
                    pipe.xadd(self._stream, {ENTRY_FIELD: data})
                if state is not None and self._state_key is not None:
                    pipe.hset(self._state_key, mapping=cast("Any", _state_fields(state)))
                pipe.execute()
        except _WRITE_ERRORS as exc:
            report = log.debug if self._failing else log.warning
            report(
                "redis_write_failed",
                error=str(exc),
                error_type=type(exc).__name__,
                buffered=self.buffered,
            )
            self._failing = True
            self._aof_settled = False  # Redis may come back from a restart
            self._metrics.redis_refusals.observe(refusal_of(exc))
            # A restart would throw the buffer away: unhealthy, but never a reason to exit.
            self._health.problem(
                "redis", f"cannot write frames: {describe(exc)}", restart_helps=False
            )
            return False
        except Exception:  # per-batch boundary: a bug must not end the writer thread
            log.exception("frame_write_crashed", buffered=self.buffered)
            self._failing = True
            self._health.problem("sink", "frame writer failed unexpectedly")
            return False
        if self._failing:
            self._failing = False
            self._metrics.redis_refusals.observe(None)
            self._health.clear("redis")
            self._health.clear("sink")
            log.info("redis_write_resumed", buffered=self.buffered)
        if not self._aof_settled:
            self._aof_settled = rewrite_once_after_start(self._client)
        return True

    def _written(self, count: int) -> None:
        self._backoff.reset()
        if not count:  # a counter state alone
            return
        self._metrics.frames_written.inc(count)
        with self._cond:
            self._in_flight = 0
            buffered = len(self._queue)
            self._metrics.buffered_frames.set(buffered)
            if self._overflowing and buffered < self._capacity:
                log.warning("buffer_overflow_ended", dropped=self._overflow_dropped)
                self._overflowing = False
                self._overflow_dropped = 0
        log.debug("frames_written", frames=count, buffered=buffered, stream=self._stream)

    def _requeue(self, batch: list[_Queued], loose: CounterState | None) -> None:
        with self._cond:
            self._in_flight = 0
            self._queue.extendleft(reversed(batch))
            if self._loose_state is not None and batch:
                # Noted while the batch was out (the queue was empty): it follows the batch, and
                # no frame was queued since (a frame with a state would have superseded it).
                self._queue[-1].state = self._loose_state
                self._loose_state = None
            elif loose is not None and not self._queue and self._loose_state is None:
                self._loose_state = loose
            self._enforce_capacity()
            self._metrics.buffered_frames.set(len(self._queue))
