"""The ingest loop: keep reading the port, hand each ALP_DATA frame to the sink, never stop.

The loop owns the port: it opens it, reads promptly, reopens it with capped backoff when it
vanishes (the process stays up), and resets the framer on every reopen (a partial frame across a
reconnect is garbage). Only the sink talks to Redis, from its own thread, so the reader never
waits on Redis.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from gateway_common import redis_conn
from gateway_common.backoff import Backoff
from gateway_common.entries import FrameEntry
from gateway_common.health import Health
from gateway_common.logs import get_logger
from gateway_common.serial_protocol import MessageType, RebootReason
from gateway_common.streams import StreamKeys
from gateway_ingest.counters import CounterTracker
from gateway_ingest.frame_sink import FrameSink
from gateway_ingest.framing import Frame, Framer, FramingError, FramingEvent
from gateway_ingest.metrics import IngestMetrics
from gateway_ingest.serial_link import PortLostError, SerialLink

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway_common.lifecycle import StopSignal
    from gateway_ingest.settings import IngestSettings

__all__ = ["Ingest", "run"]

log = get_logger(__name__)


def _type_name(message_type: int) -> str:
    try:
        return MessageType(message_type).name.lower()
    except ValueError:
        return "unknown"


def _reason_name(reason: int | None) -> str:
    if reason is None:
        return "missing"
    try:
        return RebootReason(reason).name.lower()
    except ValueError:
        return "undefined"


class Ingest:
    """Serial port to frame sink. `run` returns only when `stop` is set."""

    def __init__(
        self,
        link: SerialLink,
        sink: FrameSink,
        metrics: IngestMetrics,
        *,
        partial_frame_timeout_s: float,
        reopen_backoff_max_s: float,
        health: Health | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._health = health if health is not None else Health("ingest")
        self._link = link
        self._sink = sink
        self._metrics = metrics
        self._framer = Framer()
        self._counters = CounterTracker()
        self._partial_timeout_s = partial_frame_timeout_s
        self._backoff = Backoff(initial_s=0.1, max_s=reopen_backoff_max_s)
        self._clock = clock

    def run(self, stop: StopSignal) -> None:
        failures = 0
        while not stop.is_set():
            self._health.beat()
            try:
                self._link.open()
            except PortLostError as exc:
                self._health.problem("serial", f"cannot open {self._link.url}: {exc}")
                failures += 1
                report = log.warning if failures == 1 else log.debug
                report("serial_open_failed", port=self._link.url, error=str(exc), attempt=failures)
                stop.wait(self._backoff.next_delay())
                continue
            failures = 0
            self._backoff.reset()
            self._health.clear("serial")
            self._metrics.serial_connected.set(1)
            self._metrics.port_reopens.inc()
            log.info("serial_opened", port=self._link.url)
            try:
                self._read_until_stopped(stop)
            except PortLostError as exc:
                self._health.problem("serial", f"lost {self._link.url}: {exc}")
                log.warning("serial_lost", port=self._link.url, error=str(exc))
            finally:
                self._link.close()
                self._metrics.serial_connected.set(0)
                dropped = self._framer.reset()
                if dropped:
                    self._metrics.discarded_bytes.inc(dropped)
                    log.info("partial_frame_discarded", bytes=dropped)
        log.info("serial_reader_stopped", port=self._link.url, reason=stop.reason)

    def _read_until_stopped(self, stop: StopSignal) -> None:
        last_byte_at = self._clock()
        while not stop.is_set():
            data = self._link.read()
            self._health.beat()
            now = self._clock()
            if data:
                last_byte_at = now
                self._handle(self._framer.feed(data), now)
            elif self._framer.has_partial() and now - last_byte_at >= self._partial_timeout_s:
                self._handle(self._framer.drop_partial(), now)
        # Bytes the OS already holds were sent before the stop: take them too.
        data = self._link.read_available()
        if data:
            self._handle(self._framer.feed(data), self._clock())

    def _handle(self, events: list[FramingEvent], received_at: float) -> None:
        for event in events:
            if isinstance(event, Frame):
                self._on_frame(event, received_at)
            else:
                self._on_error(event)

    def _on_error(self, error: FramingError) -> None:
        self._metrics.serial_errors.labels(kind=error.kind).inc()
        self._metrics.discarded_bytes.inc(error.skipped)
        log.warning(
            "framing_error",
            kind=error.kind,
            skipped=error.skipped,
            counter=error.counter,
            length=error.length,
        )

    def _on_frame(self, frame: Frame, received_at: float) -> None:
        gap = self._counters.observe(frame.counter, frame.message_type)
        if gap is not None:
            self._metrics.serial_errors.labels(kind="counter_gap").inc()
            self._metrics.missed_frames.inc(gap.missed)
            log.warning(
                "counter_gap", expected=gap.expected, received=gap.received, missed=gap.missed
            )
        kind = frame.message_type
        log.debug(
            "frame_received",
            counter=frame.counter,
            type=_type_name(kind),
            type_id=kind,
            bytes=len(frame.payload),
        )
        if kind == MessageType.ALP_DATA:
            self._metrics.frames_received.inc()
            self._sink.put(
                FrameEntry(alp=frame.payload, received_at=received_at, counter=frame.counter)
            )
            return
        self._metrics.other_messages.labels(type=_type_name(kind)).inc()
        if kind == MessageType.REBOOTED:
            reason = frame.payload[0] if frame.payload else None
            self._metrics.modem_reboots.labels(reason=_reason_name(reason)).inc()
            log.warning(
                "modem_rebooted",
                reason=reason,
                reason_name=_reason_name(reason),
                counter=frame.counter,
            )
        elif kind == MessageType.LOGGING:
            text = frame.payload.decode("ascii", errors="replace")
            log.info("modem_log", text=text, counter=frame.counter)
        elif kind == MessageType.PING_RESPONSE:
            log.info("modem_ping_response", counter=frame.counter, payload=frame.payload.hex())
        else:
            log.warning(
                "unexpected_message_type",
                type_id=kind,
                counter=frame.counter,
                payload=frame.payload.hex(),
            )


def run(
    settings: IngestSettings,
    stop: StopSignal,
    registry: CollectorRegistry | None = None,
    health: Health | None = None,
) -> None:
    """Run ingest until `stop` is set, then flush the frames already read; tests call this."""
    metrics = IngestMetrics(registry if registry is not None else CollectorRegistry())
    health = health if health is not None else Health("ingest")
    client = redis_conn.connect(settings.redis_url)
    stream = StreamKeys(settings.stream_prefix).frames
    sink = FrameSink(
        client,
        stream,
        metrics,
        buffer_frames=settings.buffer_frames,
        batch_frames=settings.write_batch_frames,
        backoff_max_s=settings.redis_backoff_max_s,
        health=health,
    )
    link = SerialLink(
        settings.serial_port, settings.serial_baudrate, settings.serial_read_timeout_ms / 1000
    )
    ingest = Ingest(
        link,
        sink,
        metrics,
        partial_frame_timeout_s=settings.partial_frame_timeout_ms / 1000,
        reopen_backoff_max_s=settings.reopen_backoff_max_s,
        health=health,
    )
    log.info(
        "ingest_started",
        port=settings.serial_port,
        baudrate=settings.serial_baudrate,
        stream=stream,
        buffer_frames=settings.buffer_frames,
        buffer_overflow="drop_oldest",
    )
    sink.start()
    try:
        ingest.run(stop)
    finally:
        left = sink.stop(settings.flush_timeout_s)
        client.close()
        log.info("ingest_stopped", unflushed=left)
