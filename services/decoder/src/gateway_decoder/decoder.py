"""The decoder loop: frames in, records or dead letters out, with Redis outages waited out.

Per replica: read this consumer's own pending frames first, then new ones; every
`claim_interval_ms` claim frames left idle longer than `claim_idle_ms` (by a replica that is
gone, or by this one after an unexpected error). Each batch is decoded, then handed off in one
atomic step per frame (see handoff.py). A frame whose decoding raises unexpectedly stays pending
and is retried when claimed again; at its `max_attempts`-th delivery it is dead-lettered instead.
A frame that answers a downlink command, or carries a device's EnergyConfigFile, moves that
command's state first (command_routing.py); an answer is then only acknowledged (or becomes the
record of the file it carries). Every `trim_interval_s` the loop also trims `{p}:frames`
behind every consumer group (keeping `frames_retention_s` of raw frames for re-decoding) and
`{p}:dead` by age and to its length ceiling (see retention.py); it does so first in every turn,
whatever else fails, as trimming is what frees a full Redis.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gateway_common.backoff import Backoff
from gateway_common.command_store import CommandStore
from gateway_common.entries import DeadLetter, EntryError, Record, decode_frame, encode
from gateway_common.health import Health
from gateway_common.logs import get_logger
from gateway_common.records import (
    CommandAnswer,
    DecodeFunction,
    Outcome,
    Rejection,
    decode_entry,
)
from gateway_common.redis_refusals import refusal_of
from gateway_common.retention import RetentionRule, StreamRetention
from gateway_common.streams import DECODER_GROUP, ENTRY_FIELD, StreamKeys
from gateway_decoder.command_routing import CommandRouting
from gateway_decoder.handoff import (
    REDIS_STATE_ERRORS,
    REDIS_UNAVAILABLE,
    FrameHandoff,
    Output,
    StreamEntry,
)
from gateway_decoder.metrics import DecoderMetrics

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from prometheus_client import CollectorRegistry

    from gateway_common.lifecycle import StopSignal
    from gateway_decoder.settings import DecoderSettings

__all__ = ["STAGE", "Decoder", "run"]

STAGE = "decoder"
_FIRST_CURSOR = "0-0"

log = get_logger(__name__)


class Decoder:
    def __init__(
        self,
        handoff: FrameHandoff,
        keys: StreamKeys,
        metrics: DecoderMetrics,
        *,
        claim_idle_ms: int,
        claim_interval_ms: int,
        max_attempts: int,
        decode: DecodeFunction = decode_entry,
        health: Health | None = None,
        retention: StreamRetention | None = None,
        clock: Callable[[], float] = time.time,
        routing: CommandRouting | None = None,
    ) -> None:
        self._health = health if health is not None else Health(STAGE)
        self._routing = routing
        """Where the modem's answers and the devices' EnergyConfigFiles move their commands."""
        self._retention = retention
        self._handoff = handoff
        self._keys = keys
        self._metrics = metrics
        self._claim_idle_ms = claim_idle_ms
        self._claim_interval_s = claim_interval_ms / 1000
        self._max_attempts = max_attempts
        self._decode = decode
        self._clock = clock

    def run(self, stop: StopSignal) -> None:
        """Decode until `stop` is set; Redis errors are waited out with capped backoff."""
        backoff = Backoff(initial_s=0.1, max_s=5.0)
        pending_cursor: str | None = None
        setup_needed = True
        next_claim = 0.0
        log.info("decoder_started", consumer=self._handoff.consumer, stream=self._keys.frames)
        while not stop.is_set():
            self._health.beat()
            if self._retention is not None:
                # First, whatever else fails: trimming is what frees a full Redis.
                self._retention.run_due()  # never raises
            try:
                if setup_needed:
                    self._handoff.ensure_group()
                    setup_needed = False
                    pending_cursor = _FIRST_CURSOR
                if pending_cursor is not None:
                    entries = self._handoff.read_pending(pending_cursor)
                    if entries:
                        pending_cursor = entries[-1].entry_id
                        log.info("pending_frames_resumed", count=len(entries))
                        self.handle(entries)
                    else:
                        pending_cursor = None
                    continue
                if time.monotonic() >= next_claim:
                    self.claim_idle(stop)
                    next_claim = time.monotonic() + self._claim_interval_s
                self.handle(self._handoff.read_new())
                backoff.reset()
                self._health.clear("redis")
                self._metrics.redis_refusals.observe(None)
            except (*REDIS_UNAVAILABLE, *REDIS_STATE_ERRORS) as exc:
                delay = backoff.next_delay()
                self._redis_failed(exc, delay)
                setup_needed = True  # set the group up again: Redis may have lost it
                stop.wait(delay)
        log.info("decoder_stopped", reason=stop.reason)

    def _redis_failed(self, exc: Exception, retry_in_s: float) -> None:
        """Unreachable, or an error reply about Redis's state (NOGROUP after it lost its data,
        MISCONF, OOM...) that may clear: waited out, never a crash."""
        # Back from the call that failed (first, so that the health file written for the
        # problem carries it): backing off is not being wedged.
        self._health.beat()
        self._metrics.redis_errors.inc()
        refusal = refusal_of(exc)
        self._metrics.redis_refusals.observe(refusal)
        if isinstance(exc, REDIS_UNAVAILABLE):
            self._health.problem("redis", f"unreachable: {type(exc).__name__}")
            log.warning("redis_unavailable", error=str(exc), retry_in_s=round(retry_in_s, 2))
            return
        if refusal is None:
            self._health.problem("redis", f"error reply: {str(exc)[:200]}")
        else:  # Redis's disk or memory: a restart of this decoder would change nothing
            self._health.problem("redis", refusal.text, restart_helps=False)
        log.error("redis_error", error=str(exc), retry_in_s=round(retry_in_s, 2))

    def claim_idle(self, stop: StopSignal) -> None:
        """Claim and handle every frame pending longer than claim_idle_ms, batch by batch."""
        cursor = _FIRST_CURSOR
        while not stop.is_set():
            self._health.beat()
            claimed = self._handoff.claim(cursor, self._claim_idle_ms)
            if claimed.deleted_ids:
                log.warning(
                    "pending_frames_deleted",
                    count=len(claimed.deleted_ids),
                    ids=claimed.deleted_ids,
                )
            if claimed.entries:
                self._metrics.claimed.inc(len(claimed.entries))
                log.info("frames_claimed", count=len(claimed.entries))
                self.handle(claimed.entries)
            cursor = claimed.next_cursor
            if cursor == _FIRST_CURSOR:
                return

    def handle(self, entries: Sequence[StreamEntry]) -> None:
        """Decode a batch and hand every frame off; unexpected failures stay pending."""
        if not entries:
            return
        outputs: list[tuple[Output, str | None]] = []
        failures: list[tuple[StreamEntry, Exception]] = []
        observe = self._metrics.decode_seconds.observe
        for entry in entries:
            started = time.perf_counter()
            try:
                outcome = self._decode(entry.entry_id, entry.fields)
            except Exception as exc:  # per-message boundary: retried, then dead-lettered
                failures.append((entry, exc))
                self._metrics.error()
                continue
            finally:
                observe(time.perf_counter() - started)
            try:
                outcome = self._route(outcome)
            except (*REDIS_UNAVAILABLE, *REDIS_STATE_ERRORS):
                raise  # the loop waits Redis out; the batch stays pending and comes again
            except Exception as exc:  # per-message boundary: retried, then dead-lettered
                failures.append((entry, exc))
                self._metrics.error()
                continue
            outputs.append(self._output(entry.entry_id, outcome))
        if failures:
            outputs += self._exhausted(failures)
        done = self._handoff.commit([output for output, _ in outputs])
        self._count(outputs, done)

    def _count(self, outputs: list[tuple[Output, str | None]], done: list[bool]) -> None:
        for (output, reason), ok in zip(outputs, done, strict=True):
            if not ok:
                log.info("frame_already_handled", frame_id=output.frame_id)
            elif output.target == "none":
                self._metrics.answer()
                log.debug("command_answer_handled", frame_id=output.frame_id)
            elif reason is None:
                self._metrics.record()
                log.debug("frame_decoded", frame_id=output.frame_id)
            else:
                self._metrics.dead(reason)
                log.warning("frame_dead_lettered", frame_id=output.frame_id, reason=reason)

    def _route(self, outcome: Outcome) -> Outcome:
        """A command answer or an EnergyConfigFile moves its command; what the frame becomes
        then: its record, nothing more (an answer), or the dead letter of an unknown tag."""
        if self._routing is None:
            return outcome
        if isinstance(outcome, CommandAnswer):
            reason = self._routing.answer(outcome)
            if reason is not None:
                detail = {"tag": outcome.tag, "counter": outcome.counter}
                return Rejection(reason, outcome.raw, outcome.received_at, detail)
            if outcome.record is None:
                return outcome
            outcome = outcome.record
        if isinstance(outcome, Record) and outcome.kind == "energy_config":
            self._routing.report(outcome)
        return outcome

    def _output(self, entry_id: str, outcome: Outcome) -> tuple[Output, str | None]:
        if isinstance(outcome, Record):
            return Output(entry_id, "records", encode(outcome)), None
        if isinstance(outcome, CommandAnswer):
            if outcome.record is not None:
                return Output(entry_id, "records", encode(outcome.record)), None
            return Output(entry_id, "none", b""), None
        return self._dead_letter(entry_id, outcome), outcome.reason

    def _dead_letter(self, entry_id: str, rejection: Rejection, attempts: int = 1) -> Output:
        letter = DeadLetter(
            reason=rejection.reason,
            stage=STAGE,
            source_stream=self._keys.frames,
            source_id=entry_id,
            raw=rejection.raw,
            failed_at=self._clock(),
            received_at=rejection.received_at,
            attempts=attempts,
            detail=rejection.detail,
        )
        return Output(entry_id, "dead", encode(letter))

    def _exhausted(
        self, failures: Sequence[tuple[StreamEntry, Exception]]
    ) -> list[tuple[Output, str | None]]:
        """Dead letters for the failed frames that reached max_attempts; the rest stay pending."""
        counts = self._handoff.delivery_counts([entry.entry_id for entry, _ in failures])
        outputs: list[tuple[Output, str | None]] = []
        for entry, exc in failures:
            attempts = counts.get(entry.entry_id)
            if attempts is None:  # acknowledged meanwhile by another replica
                continue
            if attempts < self._max_attempts:
                log.warning(
                    "frame_decode_failed",
                    frame_id=entry.entry_id,
                    error=type(exc).__name__,
                    message=str(exc),
                    attempts=attempts,
                    max_attempts=self._max_attempts,
                )
                continue
            rejection = _error_rejection(entry, exc)
            outputs.append(
                (self._dead_letter(entry.entry_id, rejection, attempts), rejection.reason)
            )
        return outputs


def _error_rejection(entry: StreamEntry, exc: Exception) -> Rejection:
    """The dead letter of a frame whose decoding kept raising: its ALP bytes when readable."""
    alp = entry.fields.get(ENTRY_FIELD, b"")
    received_at: float | None = None
    detail: dict[str, Any] = {"error": str(exc)[:500]}
    try:
        frame = decode_frame(alp)
    except EntryError:
        pass
    else:
        alp, received_at = frame.alp, frame.received_at
        # As for every decoder dead letter: the counter lets `dead requeue` rebuild the entry.
        detail["counter"] = frame.counter
    return Rejection(f"decoder error: {type(exc).__name__}", alp, received_at, detail)


def run(
    settings: DecoderSettings,
    stop: StopSignal,
    registry: CollectorRegistry | None = None,
    health: Health | None = None,
    *,
    decode: DecodeFunction = decode_entry,
) -> None:
    """Run one decoder replica until `stop` is set (main() calls this; tests run it in a thread)."""
    keys = StreamKeys(settings.stream_prefix)
    handoff = FrameHandoff.connect(
        settings.redis_url,
        keys,
        settings.consumer_name,
        batch_size=settings.batch_size,
        block_ms=settings.block_ms,
    )
    metrics = DecoderMetrics(registry)
    retention = StreamRetention(
        handoff.client,
        [
            RetentionRule(keys.frames, settings.frames_retention_s, (DECODER_GROUP,)),
            RetentionRule(keys.dead, settings.dead_retention_s, (), settings.dead_max_letters),
        ],
        interval_s=settings.trim_interval_s,
        registry=metrics.registry,
    )
    try:
        decoder = Decoder(
            handoff,
            keys,
            metrics,
            claim_idle_ms=settings.claim_idle_ms,
            claim_interval_ms=settings.claim_interval_ms,
            max_attempts=settings.max_attempts,
            decode=decode,
            health=health,
            retention=retention,
            routing=CommandRouting(CommandStore(handoff.client, keys), metrics),
        )
        decoder.run(stop)
    finally:
        handoff.close()
