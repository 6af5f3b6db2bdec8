"""The publishing loop: records from Redis to the broker, acknowledged only after a good PUBACK.

One thread runs it. It reads its own pending records first, then new ones, in batches larger
than the window (they wait, decoded, in memory and stay pending in Redis), keeps at most a
window of QoS 1 messages in flight, and acknowledges each record (XACK) only once the broker
answered its DDATA with a success reason code. Acknowledgements are written in batches (see
`PublisherOptions`), and always before the loop blocks on Redis or waits for a connection.
When the connection drops, it forgets what was in flight (those records stay pending in
Redis) and, on the next connection, republishes its pending records in order, after the
DBIRTH of each device. A DDATA sent behind a DBIRTH the broker refused is not delivered (see
inflight.py). At start, and after any Redis error, it takes over the records other consumer
names of the group left pending (one publisher runs per MQTT identity: an earlier name of
this one), so they are published, oldest first, and `{p}:records` can be trimmed behind them.
Any Redis error (unreachable, or an error reply such as OOM or MISCONF) is waited out.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from gateway_common.backoff import Backoff
from gateway_common.health import Health
from gateway_common.logs import get_logger
from gateway_common.redis_conn import REDIS_UNAVAILABLE
from gateway_common.redis_refusals import refusal_of
from gateway_publisher.answers import Answers
from gateway_publisher.inflight import InFlight
from gateway_publisher.intake import Intake
from gateway_publisher.mqtt_link import ConnectionLost, Incoming, PublishOutcome
from gateway_publisher.outbox import Outbox
from gateway_publisher.payloads import dbirth_payload
from gateway_publisher.record_source import REDIS_ERRORS
from gateway_publisher.registry import DeviceRegistry

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway_common.lifecycle import StopSignal
    from gateway_common.retention import StreamRetention
    from gateway_publisher.commands import CommandIntake
    from gateway_publisher.intake import Ready
    from gateway_publisher.metrics import PublisherMetrics
    from gateway_publisher.mqtt_link import LinkEvent, MqttLink
    from gateway_publisher.options import PublisherOptions
    from gateway_publisher.record_source import RecordSource, StreamEntry
    from gateway_publisher.topics import TopicScheme

__all__ = ["Publisher"]

log = get_logger(__name__)


#: A broker's refusing DISCONNECT this soon after a record went out alone was about that record.
_CLOSED_ON_IT_S = 5.0
#: The longest the publisher waits on the MQTT link without looking at the stop signal.
_STOP_CHECK_S = 0.2


class Publisher:
    def __init__(
        self,
        *,
        source: RecordSource,
        link: MqttLink,
        topics: TopicScheme,
        metrics: PublisherMetrics,
        stop: StopSignal,
        options: PublisherOptions,
        health: Health | None = None,
        retention: StreamRetention | None = None,
        clock: Callable[[], float] = time.time,
        commands: CommandIntake | None = None,
    ) -> None:
        self._health = health if health is not None else Health("publisher")
        self._commands = commands
        """DCMDs to store as downlink commands (with the downlink on)."""
        self._retention = retention
        """Trims `{p}:records` behind every group's acknowledgements, every interval."""
        self._source = source
        self._link = link
        self._metrics = metrics
        self._stop = stop
        self._opt = options
        self._clock = clock
        self._registry = DeviceRegistry()
        self._registry_loaded = False
        self._birth = dbirth_payload(downlink=options.downlink)
        self._generation = 0
        self._ready: deque[Ready] = deque()
        self._inflight = InFlight()
        self._outbox = Outbox(
            source,
            self._registry,
            metrics,
            clock,
            ack_batch=options.ack_batch,
            ack_delay_s=options.ack_delay_ms / 1000,
        )
        self._answers = Answers(self._inflight, self._registry, self._outbox, options.max_attempts)
        self._intake = Intake(source, topics, self._outbox, downlink=options.downlink)
        self._next_backlog = 0.0
        self._probe_left = 0
        """Records still to deliver one at a time after a connection was lost with records in
        flight: until then the window is one record (with its DBIRTH), so that a broker that
        closes the connection on one record is caught at it (answers.py)."""
        self._published_at = 0.0
        """time.monotonic() of the last message (DBIRTH or DDATA) published."""

    # ---- lifecycle

    def run(self) -> None:
        """Publish until stopped; Redis errors are waited out with a capped backoff."""
        backoff = Backoff(initial_s=0.1, max_s=10.0)
        setup_needed = True
        while not self._stop.is_set():
            self._health.beat()
            try:
                if setup_needed:
                    self._setup()
                    setup_needed = False
                self._step()
                backoff.reset()
                self._health.clear("redis")
                self._metrics.redis_refusals.observe(None)
            except REDIS_UNAVAILABLE as exc:
                # Back from the call that failed (first, so that the health file written for
                # the problem carries it): waiting it out is not being wedged.
                self._health.beat()
                self._health.problem("redis", f"unreachable: {type(exc).__name__}")
                self._metrics.redis_refusals.observe(None)
                delay = backoff.next_delay()
                log.warning("redis_unavailable", error=str(exc), retry_in_s=round(delay, 2))
                self._wait_out(delay)
                setup_needed = True
            except REDIS_ERRORS as exc:
                # An error reply (OOM, MISCONF, READONLY, WRONGTYPE...): Redis-side state that
                # may clear. Set up again and retry rather than crash.
                self._health.beat()
                refusal = refusal_of(exc)
                self._metrics.redis_refusals.observe(refusal)
                if refusal is None:
                    self._health.problem("redis", f"error reply: {str(exc)[:200]}")
                else:  # Redis's disk or memory: a restart of the publisher would change nothing
                    self._health.problem("redis", refusal.text, restart_helps=False)
                delay = backoff.next_delay()
                log.error("redis_error", error=str(exc), retry_in_s=round(delay, 2))  # noqa: TRY400
                self._wait_out(delay)
                setup_needed = True
        self._shutdown()

    def _wait_out(self, delay_s: float) -> None:
        self._metrics.redis_errors.inc()
        # A read may have reached Redis before the error: read our pending ones again.
        self._intake.restart()
        # Meanwhile serve the MQTT link (keep-alives, PUBACKs): a Redis outage longer than
        # 1.5 x the keep-alive must not cost the session and a republished window.
        deadline = time.monotonic() + delay_s
        while not self._stop.is_set():
            self._health.beat()  # the loop is alive: it waits out Redis and serves the link
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._drain_events(min(left, _STOP_CHECK_S))

    def _setup(self) -> None:
        """At start and after a Redis error: the group, the registry (once), then the records
        other consumer names left pending, which become ours and are read first, in order."""
        self._source.ensure_group()
        if not self._registry_loaded:
            for device_id in self._registry.load(self._source.load_devices()):
                log.warning("registry_entry_unreadable", device_id=device_id)
            self._registry_loaded = True
            log.info("publisher_started", devices=len(self._registry))
        for taken in self._source.take_over():
            log.info(
                "consumer_taken_over",
                consumer=taken.consumer,
                records=taken.records,
                dropped=taken.dropped,
                deleted=taken.deleted,
            )
        self._intake.restart()

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self._opt.shutdown_grace_ms / 1000
        while self._inflight and self._link.connected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._handle_event(self._link.next_event(remaining))
        try:
            self._outbox.flush(final=True)
        except REDIS_ERRORS as exc:
            log.warning("shutdown_flush_failed", error=str(exc))
        log.info("publisher_stopped", in_flight_left=len(self._inflight))

    # ---- one turn of the loop

    def _step(self) -> None:
        # Answers that arrived first are handled while their connection is still current.
        self._drain_events(0)
        if self._commands is not None:
            self._commands.store_waiting()  # DCMDs that arrived; a Redis error keeps them
        self._refresh_backlog()
        if self._retention is not None:
            self._retention.run_due()  # never raises
        if not self._link.connected:
            self._metrics.connected.set(0)
            self._health.problem("mqtt", "not connected to the broker")
            self._forget_in_flight()
            self._outbox.flush()
            self._link.wait_connected(self._opt.block_ms / 1000)
            return
        if self._link.generation != self._generation:
            self._on_new_connection(self._link.generation)
        # Refill the window first: the broker works on it while the acks go to Redis.
        self._publish_ready()
        if self._outbox.due_in(time.monotonic()) == 0:
            self._outbox.flush()
        if len(self._ready) <= self._opt.read_batch // 2:
            # Block on Redis only when nothing waits for a PUBACK or for room in the window,
            # and only once every answer so far is acknowledged.
            idle = not self._inflight and not self._ready
            if idle:
                self._outbox.flush()
            entries = self._read(self._opt.read_batch - len(self._ready), block=idle)
            if entries:
                self._take(entries)
                return
        if self._inflight or self._ready:
            # Window full, nothing new, or the link refused: wait for the broker's answers
            # or for the news that the connection is gone, and no longer than the acks may wait.
            self._drain_events(self._wait_s())

    def _wait_s(self) -> float:
        wait_s = self._opt.block_ms / 1000
        due_s = self._outbox.due_in(time.monotonic())
        return wait_s if due_s is None else min(wait_s, due_s)

    def _room(self) -> int:
        window = 1 if self._probe_left else self._opt.window_messages
        broker_max = self._link.receive_maximum
        if broker_max is not None:
            window = min(window, broker_max)
        return window - len(self._inflight)

    def _read(self, count: int, *, block: bool) -> list[StreamEntry]:
        # While blocked on Redis nobody serves the MQTT link: keep-alives need it now and then.
        # At least 1 ms: XREADGROUP BLOCK 0 would wait forever.
        block_ms = max(1, min(self._opt.block_ms, int(self._link.max_idle_s * 1000)))
        return self._intake.read(count, block_ms if block else None, self._ids_in_hand)

    def _ids_in_hand(self) -> set[str]:
        ids = self._inflight.entry_ids()
        ids.update(ready.entry.entry_id for ready in self._ready)
        ids.update(self._outbox.ids())
        return ids

    def _on_new_connection(self, generation: int) -> None:
        self._forget_in_flight()
        self._generation = generation
        self._registry.new_connection()
        self._intake.restart()
        self._metrics.connected.set(1)
        self._health.clear("mqtt")
        log.info("publishing_resumed", generation=generation)

    def _forget_in_flight(self) -> None:
        """The connection is gone: what was in flight stays pending in Redis, read again later."""
        if self._inflight or self._ready:
            log.info("in_flight_forgotten", messages=len(self._inflight), ready=len(self._ready))
        self._inflight.clear()
        self._ready.clear()
        self._intake.restart()

    # ---- records in

    def _take(self, entries: list[StreamEntry]) -> None:
        for entry in entries:
            ready = self._intake.prepare(entry)
            if ready is not None:
                self._ready.append(ready)
        self._publish_ready()

    def _publish_ready(self) -> None:
        while self._ready:
            ready = self._ready[0]
            device = ready.record.device_id
            topics = ready.topics
            birth = self._registry.needs_birth(device)
            oversize = self._link.too_large(topics.ddata, ready.payload)
            if oversize is None and birth:
                oversize = self._link.too_large(topics.dbirth, self._birth)
                oversize = None if oversize is None else f"its DBIRTH: {oversize}"
            if oversize is not None:
                # The broker would close the connection on it, again and again.
                self._ready.popleft()
                self._answers.undeliverable(ready, f"too large for the broker: {oversize}")
                continue
            # A DBIRTH travels with its DDATA; with nothing in flight the pair always goes (the
            # DDATA only once the DBIRTH is answered if the broker takes one message at a time).
            if self._inflight and self._room() < 1 + birth:
                return
            self._keep_unacknowledged_within_window(1 + birth)
            if birth:
                mid = self._link.publish(
                    topics.dbirth,
                    self._birth,
                    retain=True,
                    generation=self._generation,
                )
                if mid is None:
                    return
                self._inflight.add_birth(mid, device)
                self._published_at = time.monotonic()
                self._registry.mark_born(device)
                log.info("dbirth_sent", device_id=device)
                broker_max = self._link.receive_maximum
                if broker_max is not None and broker_max - len(self._inflight) < 1:
                    # A broker that takes one message at a time (Receive Maximum 1) may close
                    # the connection on a second: the DDATA follows once the DBIRTH is answered.
                    return
            mid = self._link.publish(
                topics.ddata,
                ready.payload,
                retain=False,
                generation=self._generation,
            )
            if mid is None:
                return
            self._inflight.add_data(mid, ready)
            self._published_at = time.monotonic()
            self._ready.popleft()

    def _keep_unacknowledged_within_window(self, more: int) -> None:
        """Messages published and not yet acknowledged in Redis (in flight, or answered with
        the acknowledgement still in the outbox) stay within the window: that is what a crash
        can publish twice. Write the acknowledgements before they would exceed it."""
        waiting = self._outbox.acks_waiting
        if waiting and len(self._inflight) + waiting + more > self._opt.window_messages:
            self._outbox.flush()

    # ---- broker answers

    def _drain_events(self, timeout_s: float) -> None:
        """Handle every queued event; wait up to `timeout_s` for the first one."""
        event = self._link.next_event(timeout_s)
        while event is not None:
            self._handle_event(event)
            event = self._link.next_event(0)

    def _handle_event(self, event: LinkEvent | None) -> None:
        if isinstance(event, ConnectionLost):
            if event.generation == self._generation:
                self._metrics.connected.set(0)
                self._health.problem("mqtt", "connection lost")
                self._suspect(event)
                self._forget_in_flight()
        elif isinstance(event, PublishOutcome) and event.generation == self._generation:
            waited = self._inflight.waited(event.mid)
            if waited is not None:
                self._metrics.puback.observe(waited)
            ready = self._answers.handle(event, self._ready)
            if ready is not None:
                self._delivered(ready)
        elif isinstance(event, Incoming) and self._commands is not None:
            self._commands.received(event)  # stored by the next turn (no Redis here)

    def _suspect(self, lost: ConnectionLost) -> None:
        """The connection is lost with what is in flight: blame a record sent alone just before
        when the broker refused it with a DISCONNECT (probing), or start probing the records
        that were in flight. A bare close (a network loss, a restart) blames nothing."""
        in_flight = self._inflight.records()
        if not in_flight:
            # A DBIRTH alone (the broker takes one message at a time): its record waits behind it.
            in_flight = [r for r in self._ready if r.record.device_id in self._inflight.births()]
            in_flight = in_flight[:1]
        if not in_flight:
            return
        alone = len(in_flight) == 1 and self._probe_left > 0
        recent = time.monotonic() - self._published_at <= _CLOSED_ON_IT_S
        if alone and lost.refusal and recent:
            self._probe_left -= 1
            self._answers.closed_on(in_flight[0], lost.reason, self._ready)
            return
        if not self._probe_left:
            log.info("probing_one_record_at_a_time", records=len(in_flight))
        self._probe_left = max(self._probe_left, len(in_flight))

    def _delivered(self, ready: Ready) -> None:
        if self._probe_left:
            self._probe_left -= 1
        self._outbox.ack(ready.entry.entry_id, ready.record)
        self._metrics.published.inc()
        latency_s = max(0.0, self._clock() - ready.record.received_at)
        self._metrics.latency.observe(latency_s)
        log.debug(
            "record_published",
            entry_id=ready.entry.entry_id,
            device_id=ready.record.device_id,
            kind=ready.record.kind,
            latency_ms=round(latency_s * 1000, 1),
        )

    # ---- Redis

    def _refresh_backlog(self) -> None:
        now = time.monotonic()
        if now >= self._next_backlog:
            self._metrics.backlog.set(self._source.backlog())
            self._metrics.set_stale(
                self._registry.stale_flags(self._clock(), self._opt.device_interval_s)
            )
            self._next_backlog = now + self._opt.backlog_interval_ms / 1000
