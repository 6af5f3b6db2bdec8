"""The ingest loop: keep reading the port, hand each ALP_DATA frame to the sink, never stop.

The downlink (downlink.py) writes the commands to the modem from a thread of its own; the
reader only shows it the ALP frames (the modem's completions close its sessions) and tells it
when the modem rebooted.

The loop owns the port: it opens it, reads promptly, reopens it with capped backoff when it
vanishes (the process stays up), and resets the framer on every reopen (a partial frame across a
reconnect is garbage). Only the sink talks to Redis, from its own thread, so the reader never
waits on Redis. The modem counter state after every frame goes to the sink too, which persists
it; at start the counter tracker is resumed from it, so the frames the modem sent while no ingest
held the port are counted as a gap on the first frame after the start (without a persisted state,
the very first start, that frame only sets the baseline).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from gateway_common import redis_conn
from gateway_common.backoff import Backoff
from gateway_common.command_metrics import CommandMetrics
from gateway_common.command_store import CommandStore
from gateway_common.disk_space import DiskWatch
from gateway_common.entries import FrameEntry
from gateway_common.health import Health
from gateway_common.logs import get_logger
from gateway_common.streams import StreamKeys
from gateway_dash7 import (
    BITS_PER_BYTE,
    CounterTracker,
    Frame,
    Framer,
    FramingError,
    FramingEvent,
    Gap,
    MessageType,
    RebootReason,
    may_have_wrapped,
    parse_log_text,
    parse_reboot_reason,
)
from gateway_ingest.downlink import Downlink
from gateway_ingest.frame_sink import CounterState, FrameSink, load_counter_state
from gateway_ingest.metrics import IngestMetrics
from gateway_ingest.serial_link import PortLostError, SerialLink

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway_common.lifecycle import StopSignal
    from gateway_ingest.settings import IngestSettings

__all__ = ["Ingest", "run"]

log = get_logger(__name__)


def _tracker(seed: CounterState | None) -> CounterTracker:
    """A counter tracker resumed from the state the previous ingest persisted, if any."""
    return CounterTracker(None if seed is None else seed.position)


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
        seed: CounterState | None = None,
        seed_loader: Callable[[], CounterState | None] | None = None,
        baudrate: int = 115200,
        clock: Callable[[], float] = time.time,
        on_reboot: Callable[[], None] | None = None,
        on_alp: Callable[[bytes], None] | None = None,
    ) -> None:
        self._health = health if health is not None else Health("ingest")
        self._on_reboot = on_reboot
        """Told when the modem rebooted (the downlink writes again what the modem held)."""
        self._on_alp = on_alp
        """Shown every ALP_DATA frame (the downlink follows the modem's sessions in them)."""
        self._link = link
        self._sink = sink
        self._metrics = metrics
        self._framer = Framer()
        self._counters = _tracker(seed)
        self._resumed_from = seed
        """The state persisted by the previous ingest, until the first frame is checked."""
        self._clock_floor: float | None = None
        """While the clock reads earlier than the last frame the previous ingest saw: that
        frame's time. Frames are dated wrong until the clock passes it (NTP after a boot)."""
        self._seed_loader = seed_loader
        """Reads that state from Redis once the port is open (the kernel buffers the line
        meanwhile; a slow or unreachable Redis must never keep the port closed)."""
        self._baudrate = baudrate
        self._byte_time_s = BITS_PER_BYTE / baudrate
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
            self._load_seed()
            try:
                self._read_until_stopped(stop)
            except PortLostError as exc:
                self._health.problem("serial", f"lost {self._link.url}: {exc}")
                log.warning("serial_lost", port=self._link.url, error=str(exc))
            finally:
                self._link.close()
                self._metrics.serial_connected.set(0)
                # What the line left unfinished: an error's resync is reported, a partial frame
                # given up (a whole frame among the bytes behind its sync is still kept).
                self._handle(self._framer.end(), self._clock(), 0.0)
                dropped = self._framer.reset()
                if dropped:
                    self._metrics.discarded_bytes.inc(dropped)
                    log.info("partial_frame_discarded", bytes=dropped)
        log.info("serial_reader_stopped", port=self._link.url, reason=stop.reason)

    def _load_seed(self) -> None:
        if self._seed_loader is None:
            return
        loader, self._seed_loader = self._seed_loader, None
        seed = loader()
        self._counters = _tracker(seed)
        self._resumed_from = seed
        log.info("counter_state_loaded", last_counter=None if seed is None else seed.counter)

    def _read_until_stopped(self, stop: StopSignal) -> None:
        last_byte_at = self._clock()
        while not stop.is_set():
            data = self._link.read()
            now = self._clock()
            self._health.beat()
            if self._clock_floor is not None and now >= self._clock_floor:
                self._clock_caught_up()
            if data:
                last_byte_at = now
                byte_s = self._byte_time_within(len(data), now - self._link.first_byte_at)
                self._handle(self._framer.feed(data), now, byte_s)
            elif self._framer.has_partial() and now - last_byte_at >= self._partial_timeout_s:
                self._handle(self._framer.drop_partial(), now, 0.0)
        # Bytes the OS already holds were sent before the stop: take them too.
        data = self._link.read_available()
        if data:
            self._handle(self._framer.feed(data), self._clock(), 0.0)

    def _clock_caught_up(self) -> None:
        """Checked after every read, frame or not: the problem ends with NTP, not a frame."""
        self._clock_floor = None
        self._metrics.clock_behind_seconds.set(0)
        self._health.clear("clock")
        log.info("clock_caught_up")

    def _byte_time_within(self, size: int, window_s: float) -> float:
        """The time one byte of this read took to arrive: a byte-time of the line, unless the
        read's `size` bytes came faster than a UART sends them (a pty or socket, or bytes the
        kernel had buffered): then spread over the `window_s` between the read's first byte and
        its return, so that no frame is dated before its bytes could have arrived."""
        return min(self._byte_time_s, max(window_s, 0.0) / size)

    def _handle(self, events: list[FramingEvent], read_at: float, byte_s: float) -> None:
        for event in events:
            if isinstance(event, Frame):
                # The frame's last byte arrived `trailing` bytes before the end of the read:
                # frames of one read get distinct, increasing receive times.
                self._on_frame(event, read_at - event.trailing * byte_s)
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
                "counter_gap",
                expected=gap.expected,
                received=gap.received,
                missed=gap.missed,
                after_restart=gap.after_restart,
            )
        if self._resumed_from is not None:
            self._log_resumed(self._resumed_from, frame, gap, received_at)
            self._resumed_from = None
        position = self._counters.position
        state = None if position is None else CounterState.at(position, received_at)
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
            if self._on_alp is not None:
                self._on_alp(frame.payload)
            self._sink.put(
                FrameEntry(alp=frame.payload, received_at=received_at, counter=frame.counter),
                state,
            )
            return
        if state is not None:
            self._sink.note_state(state)
        self._metrics.other_messages.labels(type=_type_name(kind)).inc()
        if kind == MessageType.REBOOTED:
            reason = parse_reboot_reason(frame.payload)
            self._metrics.modem_reboots.labels(reason=_reason_name(reason)).inc()
            if self._on_reboot is not None:
                self._on_reboot()
            log.warning(
                "modem_rebooted",
                reason=reason,
                reason_name=_reason_name(reason),
                counter=frame.counter,
            )
        elif kind == MessageType.LOGGING:
            text = parse_log_text(frame.payload)
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

    def _log_resumed(
        self, previous: CounterState, frame: Frame, gap: Gap | None, received_at: float
    ) -> None:
        """The first frame after a start, checked against the counter the last ingest saw."""
        since_s = received_at - previous.seen_at
        behind = -since_s > _CLOCK_TOLERANCE_S
        log.info(
            "counter_resumed",
            previous_counter=previous.counter,
            counter=frame.counter,
            rebooted=frame.message_type == MessageType.REBOOTED,
            missed=0 if gap is None else gap.missed,
            since_previous_frame_s=round(since_s, 3),
            # 256 frames could have been sent meanwhile: whole wraps of the counter are invisible
            # (and with the clock behind, the silence is unknown)
            missed_is_lower_bound=behind or may_have_wrapped(max(0.0, since_s), self._baudrate),
        )
        if behind:
            # A Pi without a real-time clock, booted before NTP answered: every receive time,
            # hence every reading's timestamp, is wrong until the clock is set.
            self._clock_floor = previous.seen_at
            self._metrics.clock_behind_seconds.set(-since_s)
            self._health.problem(
                "clock",
                f"the clock is {-since_s:.0f} s behind the last frame saved (not synchronised?)",
                restart_helps=False,
            )
            log.warning(
                "clock_behind_last_frame",
                behind_s=round(-since_s, 3),
                last_frame_at=previous.seen_at,
                now=received_at,
            )


#: How long a stop waits for the downlink's thread (a blocking read of 1 s, or one write).
_DOWNLINK_JOIN_S = 3.0

#: A clock this far behind the last frame the previous ingest saw is wrong, not jittery.
_CLOCK_TOLERANCE_S = 1.0

#: The port is open while the saved counter is read: wait no longer than the kernel's buffer
#: (~4 KiB, ~0.35 s at line rate) lasts; without it, gaps after this start are not counted.
_SEED_TIMEOUT_S = 0.3


def _load_seed_quickly(redis_url: str, key: str) -> CounterState | None:
    client = redis_conn.connect(
        redis_url,
        timeout_s=_SEED_TIMEOUT_S,
        connect_timeout_s=_SEED_TIMEOUT_S,
        health_checks=False,  # its PING is refused while Redis cannot persist; the read is not
    )
    try:
        return load_counter_state(client, key)
    finally:
        client.close()


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
    keys = StreamKeys(settings.stream_prefix)
    stream = keys.frames
    sink = FrameSink(
        client,
        stream,
        metrics,
        buffer_frames=settings.buffer_frames,
        batch_frames=settings.write_batch_frames,
        backoff_max_s=settings.redis_backoff_max_s,
        health=health,
        state_key=keys.ingest_state,
    )
    link = SerialLink(
        settings.serial_port,
        settings.serial_baudrate,
        settings.serial_read_timeout_ms / 1000,
        write_timeout_s=settings.serial_write_timeout_ms / 1000,
    )
    downlink = Downlink(
        client,
        CommandStore(client, keys),
        link.write,
        metrics,
        CommandMetrics(metrics.registry),
        health=health,
        max_in_flight=settings.downlink_max_in_flight,
        access_class=settings.downlink_access_class,
        default_interval_s=settings.device_interval_s,
    )
    ingest = Ingest(
        link,
        sink,
        metrics,
        partial_frame_timeout_s=settings.partial_frame_timeout_ms / 1000,
        reopen_backoff_max_s=settings.reopen_backoff_max_s,
        health=health,
        seed_loader=lambda: _load_seed_quickly(settings.redis_url, keys.ingest_state),
        baudrate=settings.serial_baudrate,
        on_reboot=downlink.note_reboot,
        on_alp=downlink.note_frame,
    )
    log.info(
        "ingest_started",
        port=settings.serial_port,
        baudrate=settings.serial_baudrate,
        stream=stream,
        buffer_frames=settings.buffer_frames,
        buffer_overflow="drop_oldest",
    )
    if settings.redis_data_dir is not None:
        # Redis itself cannot say its disk is full when it exits for it (appendfsync always).
        DiskWatch(
            settings.redis_data_dir, settings.disk_min_free_mb << 20, health, metrics.registry
        ).start(stop)
    sink.start()
    downlink.start(stop)
    try:
        ingest.run(stop)
    finally:
        left = sink.stop(settings.flush_timeout_s)
        downlink.join(_DOWNLINK_JOIN_S)
        client.close()
        log.info("ingest_stopped", unflushed=left)
