"""Scenario 2 of issue 14: a silent network, to the broker and to Redis.

A TCP proxy (gateway_devkit.tcp_proxy) sits on one link while readings flow at the serial line
rate through ingest, a decoder and the publisher (processes, private Redis and Mosquitto). It
makes the link go silent without closing anything, in two ways:

- a NAT drop (`blackhole_existing`): the connections open at that moment are dead for good,
  new connections work, as when a NAT or a 4G router loses its state;
- an outage (`silence`, then `resume`): nothing goes through for a while, new connections
  included, then everything that waited is delivered, as when a link comes back and TCP
  retransmits.

Broker link (`test_a_silent_broker_link_is_replaced_within_the_limit`): the publisher gives a
silent connection up within 1.5 x the keep-alive of the last bytes it received (measured by the
proxy, which sees the publisher close its side, and in the publisher's log), reconnects, and
republishes what was in flight; an outage shorter than that costs nothing. Every accepted
reading reaches the subscriber; repeats stay within the window per lost connection.

Redis link (`test_a_silent_redis_link_blocks_no_service`): every service keeps turning (its
heartbeat never older than the health limit), ingest keeps reading the port and buffers, each
service names the condition in its health within the socket timeout, and all recover once the
link is back. Every accepted reading is published; the only repeats are ingest's documented
one (a batch whose EXEC reached Redis but whose reply did not).

`make test` runs one NAT drop and one long outage on the broker link, one outage on the Redis
link; `make chaos` (GATEWAY_CHAOS_SCALE=full) longer flows with a seeded schedule of both kinds
(GATEWAY_CHAOS_SEED), short and long.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import pytest

from gateway_common.redis_conn import SOCKET_TIMEOUT_S
from gateway_common.streams import StreamKeys
from gateway_devkit.modem_line import ModemLine
from gateway_devkit.processes import Supervisor
from gateway_devkit.scrape import sample
from gateway_devkit.tcp_proxy import ConnectionInfo, Mode, TcpProxy
from gateway_publisher.mqtt_link import SILENCE_LIMIT

from .delivery import (
    FRAMES_PER_S,
    PIPELINE,
    WINDOW,
    PacedFlow,
    check_clean_exit,
    check_delivery,
    health_record,
    log_events,
    pipeline_env,
    pipeline_ports,
    read_delivery,
    seq_of_alp,
    start_pipeline,
    wait_drained,
    watch_readings,
)
from .readings import ranges
from .seeds import choose_seed, full_scale

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway_devkit.mqtt_watch import MqttWatch
    from gateway_devkit.servers import PrivateBroker, PrivateRedis

pytestmark = [pytest.mark.integration, pytest.mark.system, pytest.mark.chaos]

KEEPALIVE_S = 5
"""The broker test's keep-alive (the smallest allowed), so a silence is found quickly."""
LIMIT_S = SILENCE_LIMIT * KEEPALIVE_S
MARGIN_S = 0.75
"""Scheduling on a loaded 2-core machine, on top of a bound the code checks to the millisecond."""
TURN_MAX_S = {
    "ingest": 2.0,
    "decoder": 2 * SOCKET_TIMEOUT_S + 2.0,
    "publisher": 2 * SOCKET_TIMEOUT_S + 2.0,
}
"""The oldest a service's heartbeat may get while Redis is silent (with a margin of 2 s):
ingest's reader never waits on Redis; a decoder's or the publisher's loop turn makes at most
two calls that can wait out the socket timeout (a retention pass, if one is due, and the call
that fails), then beats while it backs off. Below GATEWAY_HEALTH_MAX_AGE_S (30 s)."""
DRAIN_TIMEOUT_S = 60.0
WARNINGS = {
    "ingest": "redis_write_failed",
    "decoder": "redis_unavailable",
    "publisher": "redis_unavailable",
}
"""The log event by which each service reports that a Redis call failed."""
WRITE_BATCH_FRAMES = 100
"""GATEWAY_WRITE_BATCH_FRAMES (default): what ingest may write twice per outage (guarantees.md)."""


@dataclass(frozen=True)
class LinkFault:
    kind: Literal["nat_drop", "outage"]
    at_s: float
    """Offset from the start of the flow."""
    down_s: float = 0.0
    """An outage's length (a NAT drop lasts for good, for the connections it caught)."""

    def __str__(self) -> str:
        length = f" for {self.down_s:.1f} s" if self.kind == "outage" else ""
        return f"{self.at_s:6.1f}s {self.kind}{length}"

    @property
    def end_s(self) -> float:
        return self.at_s + self.down_s


@dataclass
class Done:
    fault: LinkFault
    began: float
    """time.monotonic() when it began."""
    began_wall: float
    live: list[ConnectionInfo]
    """The proxy's connections that were forwarding when it began, as they were once it had."""
    ended: float | None = None
    ended_wall: float | None = None


def carry_out(schedule: list[LinkFault], proxy: TcpProxy, flow: PacedFlow) -> list[Done]:
    """Each fault at its time, from the start of the flow (this thread)."""
    done = []
    for fault in schedule:
        time.sleep(max(0.0, flow.started_at + fault.at_s - time.monotonic()))
        forwarding = {c.number for c in proxy.connections() if c.mode is Mode.FORWARD}
        began, began_wall = time.monotonic(), time.time()
        if fault.kind == "nat_drop":
            proxy.blackhole_existing()
        else:
            proxy.silence()
        # Read once nothing is delivered any more: their last deliveries before the fault.
        live = [c for c in proxy.connections() if c.number in forwarding]
        record = Done(fault, began, began_wall, live)
        done.append(record)
        if fault.kind == "nat_drop":
            continue
        time.sleep(max(0.0, record.began + fault.down_s - time.monotonic()))
        proxy.resume()
        record.ended, record.ended_wall = time.monotonic(), time.time()
    return done


def frames_for(schedule: list[LinkFault], tail_s: float) -> int:
    """Frames enough for the flow to outlast the last fault by `tail_s`."""
    return int((max(f.end_s for f in schedule) + tail_s) * FRAMES_PER_S)


# ----------------------------------------------------------------------------- fixtures
# mosquitto, paced_line (a reader that stops reading loses frames, as on a UART), supervisor:
# conftest


@pytest.fixture
def redis_server(private_redis: Callable[..., PrivateRedis]) -> PrivateRedis:
    return private_redis()


# ----------------------------------------------------------------------------- the broker link


def broker_schedule(rng: random.Random) -> list[LinkFault]:
    """Short: a NAT drop, then an outage longer than the limit. Full: eight, alternating, the
    outages in turn shorter than the keep-alive and longer than the limit (lengths drawn); each
    once the previous one is over and the publisher connected again."""
    if not full_scale():
        return [LinkFault("nat_drop", 2.0), LinkFault("outage", 12.0, 12.0)]
    faults, at = [], 2.0
    for index in range(8):
        if index % 2 == 0:
            fault = LinkFault("nat_drop", at)
        else:
            shorter = index % 4 == 1
            down = rng.uniform(1.0, KEEPALIVE_S - 1.5) if shorter else rng.uniform(LIMIT_S + 2, 25)
            fault = LinkFault("outage", at, round(down, 2))
        faults.append(fault)
        at = fault.end_s + LIMIT_S + 1.0 + rng.uniform(2.0, 5.0)
    return faults


def test_a_silent_broker_link_is_replaced_within_the_limit(
    redis_server: PrivateRedis,
    mosquitto: PrivateBroker,
    paced_line: ModemLine,
    subscriber: Callable[..., MqttWatch],
    supervisor: Supervisor,
) -> None:
    seed = choose_seed("GATEWAY_CHAOS_SEED")
    tag = f"[seed {seed}]"
    schedule = broker_schedule(random.Random(seed))
    count = frames_for(schedule, tail_s=4.0)
    print(f"\nsilent broker link, seed {seed}: {count} frames, keep-alive {KEEPALIVE_S} s")
    for fault in schedule:
        print(f"  {fault}")
    prefix = topic_root = "silent-broker"
    keys = StreamKeys(prefix)
    watch = watch_readings(subscriber, mosquitto, topic_root)
    with TcpProxy("127.0.0.1", mosquitto.port) as proxy:
        env = pipeline_env(
            redis_url=redis_server.url,
            mqtt_port=proxy.port,
            line=paced_line,
            prefix=prefix,
            topic_root=topic_root,
            KEEPALIVE_S=str(KEEPALIVE_S),
            WINDOW_MESSAGES=str(WINDOW),
            RECONNECT_MIN_S="1",
            RECONNECT_MAX_S="1",
        )
        supervisor.env = env
        start_pipeline(supervisor, pipeline_ports(), consumer_prefix="silent-")
        flow = PacedFlow(paced_line, count).start()
        done = carry_out(schedule, proxy, flow)
        flow.join(timeout_s=count / FRAMES_PER_S + 30)

        client = redis_server.client()
        seq_of = seq_of_alp(count)
        drained_s = wait_drained(
            client, keys, paced_line, watch, seq_of, timeout_s=DRAIN_TIMEOUT_S, tag=tag,
            logs=supervisor.logs, accept_all=count,
        )  # fmt: skip
        time.sleep(1.0)  # a late repeat would arrive now
        connections = proxy.connections()

    publisher = supervisor.current("publisher")
    silent = log_events(publisher, "mqtt_link_silent")
    lost = log_events(publisher, "mqtt_disconnected")
    connected = log_events(publisher, "mqtt_connected")
    report = [f"flow {flow.ended_at - flow.started_at:.1f} s, drained {drained_s:.1f} s later"]  # type: ignore[operator]
    losses = 0
    for record in done:
        fault = record.fault
        if fault.kind == "nat_drop":
            # The proxy saw when the publisher last received bytes on the connection it caught,
            # and when the publisher closed its side: the detection, from outside.
            (caught,) = record.live
            dead = connections[caught.number - 1]
            assert dead.client_closed_at is not None, f"{tag} {fault}: never given up"
            assert dead.last_down_at is not None
            silent_s = dead.client_closed_at - dead.last_down_at
            after_s = dead.client_closed_at - record.began
            report.append(f"{fault}: given up {silent_s:.2f} s after its last bytes")
            assert KEEPALIVE_S <= silent_s <= LIMIT_S + MARGIN_S, (tag, str(fault), silent_s)
            assert after_s <= LIMIT_S + MARGIN_S, (tag, str(fault), after_s)
            losses += 1
            detected_wall = record.began_wall + after_s
        else:
            assert record.ended_wall is not None
            gone = [e for e in lost if record.began_wall <= e.at <= record.ended_wall + 1.0]
            if not gone and fault.down_s < LIMIT_S + MARGIN_S:
                # Shorter than the keep-alive it must survive (a ping gets that long from paho,
                # 1.5 x from the link); up to the limit either way is right.
                report.append(f"{fault}: the link survived")
                continue
            assert fault.down_s >= KEEPALIVE_S - MARGIN_S, (
                f"{tag} {fault}: a short outage cost the link: {gone}"
            )
            assert gone, f"{tag} {fault}: the silent link was never given up"
            event = gone[0]
            (caught,) = record.live
            assert caught.last_down_at is not None
            last_bytes_wall = record.began_wall + caught.last_down_at - record.began
            silent_s = event.at - last_bytes_wall
            after_s = event.at - record.began_wall
            report.append(
                f"{fault}: given up {silent_s:.2f} s after its last bytes ({after_s:.2f} s after "
                f"the outage began; {event.fields['reason']})"
            )
            assert silent_s <= LIMIT_S + MARGIN_S, (tag, str(fault), silent_s)
            assert after_s <= LIMIT_S + MARGIN_S, (tag, str(fault), after_s)
            losses += 1
            detected_wall = event.at
        later = [e.at - detected_wall for e in connected if e.at > detected_wall]
        assert later, f"{tag} {fault}: never connected again"
        report[-1] += f", connected again {later[0]:.2f} s later"

    delivery = read_delivery(client, keys, watch.snapshot(), seq_of, tag)
    check_delivery(client, keys, delivery, topic_root=topic_root, tag=tag)
    client.close()
    report.append(
        f"{len(delivery.entries_per_seq)}/{count} readings accepted, "
        f"{delivery.extras} repeated by the publisher over {len(lost)} lost connections "
        f"({len(silent)} given up at the link's silence limit) "
        f"({len(connections)} connections through the proxy)"
    )
    print("  " + "\n  ".join(report))

    check_clean_exit(supervisor, list(PIPELINE), tag)
    # Only the faults lost connections (an outage's stale attempt may take over once more).
    assert losses <= len(lost) <= 2 * losses, f"{tag} {len(lost)} connections lost: {lost}"
    assert delivery.ingest_repeats == 0, tag
    assert delivery.extras <= WINDOW * len(lost), (
        f"{tag} {delivery.extras} repeats for {len(lost)} lost connections, window {WINDOW}"
    )
    assert flow.delivered() == set(range(count)), "the line lost frames: ingest stopped reading"
    assert len(delivery.entries_per_seq) == count, (
        f"{tag} not accepted: {ranges(set(range(count)) - set(delivery.entries_per_seq))}"
    )


# ----------------------------------------------------------------------------- the Redis link


def redis_schedule(rng: random.Random) -> list[LinkFault]:
    """Short: one outage beyond the socket timeout. Full: six, alternating outages (3 to 40 s)
    and NAT drops, each once the services had time to recover from the previous one."""
    if not full_scale():
        return [LinkFault("outage", 2.0, SOCKET_TIMEOUT_S + 2.5)]
    faults, at = [], 2.0
    for index in range(6):
        if index % 2 == 0:
            fault = LinkFault("outage", at, round(rng.uniform(3.0, 40.0), 2))
        else:
            fault = LinkFault("nat_drop", at)
        faults.append(fault)
        at = fault.end_s + 2 * SOCKET_TIMEOUT_S + rng.uniform(5.0, 10.0)
    return faults


@dataclass
class Watched:
    """What the test saw of the services every 0.2 s (times: time.monotonic())."""

    samples: list[tuple[float, str, bool, str, float]] = field(default_factory=list)
    """(when, service, ok, reason, heartbeat age in seconds) from each health file."""
    unread: list[tuple[float, int]] = field(default_factory=list)
    """Bytes the line delivered that ingest had not read yet."""
    buffered: list[tuple[float, float]] = field(default_factory=list)
    """gateway_ingest_buffered_frames."""

    def first_problem(self, service: str, since: float, until: float) -> float | None:
        return next(
            (at for at, name, ok, reason, _ in self.samples
             if name == service and since <= at <= until and not ok and "redis" in reason),
            None,
        )  # fmt: skip

    def first_ok(self, service: str, since: float) -> float | None:
        return next(
            (at for at, name, ok, _, _ in self.samples if name == service and at >= since and ok),
            None,
        )

    def oldest_beat(self, service: str, since: float, until: float) -> float:
        ages = [
            age for at, name, _, _, age in self.samples if name == service and since <= at <= until
        ]
        return max(ages, default=0.0)


def watch_services(
    services: Supervisor, line: ModemLine, ingest_port: int, stop: threading.Event
) -> Watched:
    watched = Watched()

    def run() -> None:
        while not stop.wait(0.2):
            now, wall = time.monotonic(), time.time()
            for name in PIPELINE:
                record = health_record(services, name)
                if record is None:
                    continue
                age = wall - float(record["beat_at"])
                watched.samples.append((now, name, bool(record["ok"]), record["reason"], age))
            watched.unread.append((now, line.unread()))
            value = sample(ingest_port, "gateway_ingest_buffered_frames")
            if value is not None:
                watched.buffered.append((now, value))

    threading.Thread(target=run, name="watch-services", daemon=True).start()
    return watched


def test_a_silent_redis_link_blocks_no_service(
    redis_server: PrivateRedis,
    mosquitto: PrivateBroker,
    paced_line: ModemLine,
    subscriber: Callable[..., MqttWatch],
    supervisor: Supervisor,
) -> None:
    seed = choose_seed("GATEWAY_CHAOS_SEED")
    tag = f"[seed {seed}]"
    schedule = redis_schedule(random.Random(seed))
    # Time after the last fault for a NAT drop's timeouts (the short run has none).
    count = frames_for(schedule, tail_s=SOCKET_TIMEOUT_S + 5.0 if full_scale() else 6.0)
    print(f"\nsilent Redis link, seed {seed}: {count} frames, socket timeout {SOCKET_TIMEOUT_S} s")
    for fault in schedule:
        print(f"  {fault}")
    prefix = topic_root = "silent-redis"
    keys = StreamKeys(prefix)
    watch = watch_readings(subscriber, mosquitto, topic_root)
    ports = pipeline_ports()
    stop_watching = threading.Event()
    with TcpProxy(redis_server.host, redis_server.port) as proxy:
        env = pipeline_env(
            redis_url=f"redis://{proxy.host}:{proxy.port}/0",
            mqtt_port=mosquitto.port,
            line=paced_line,
            prefix=prefix,
            topic_root=topic_root,
            WINDOW_MESSAGES=str(WINDOW),
            TRIM_INTERVAL_S="5",  # retention passes during the silences too
        )
        supervisor.env = env
        start_pipeline(supervisor, ports, consumer_prefix="silent-")
        watched = watch_services(supervisor, paced_line, ports["ingest"], stop_watching)
        flow = PacedFlow(paced_line, count).start()
        done = carry_out(schedule, proxy, flow)
        flow.join(timeout_s=count / FRAMES_PER_S + 60)

        client = redis_server.client()
        seq_of = seq_of_alp(count)
        drained_s = wait_drained(
            client, keys, paced_line, watch, seq_of, timeout_s=DRAIN_TIMEOUT_S, tag=tag,
            logs=supervisor.logs, accept_all=count,
        )  # fmt: skip
        time.sleep(1.0)  # a late repeat would arrive now
    stop_watching.set()

    flow_s = (flow.ended_at or 0.0) - flow.started_at
    report = [f"flow {flow_s:.1f} s, drained {drained_s:.1f} s later"]
    failures = []
    for record in done:
        fault = record.fault
        # A NAT drop lasts, for the connections it caught, until each times out.
        until = record.began + (fault.down_s if fault.kind == "outage" else SOCKET_TIMEOUT_S)
        until_wall = record.began_wall + until - record.began
        report.append(f"{fault}:")
        for name in PIPELINE:
            beat = watched.oldest_beat(name, record.began, until + 1.0)
            warned = [
                e.at - record.began_wall
                for e in log_events(supervisor.current(name), WARNINGS[name])
                if record.began_wall <= e.at <= until_wall + 1.0
            ]
            shown = watched.first_problem(name, record.began, until + 1.0)
            since = record.began + (warned[0] if warned else 0.0)
            back = watched.first_ok(name, max(since, shown or 0.0))
            report.append(
                f"  {name}: heartbeat at most {beat:.1f} s old; "
                + (f"{WARNINGS[name]} after {warned[0]:.1f} s" if warned else "no warning")
                + (
                    ""
                    if shown is None
                    else f", health says redis after {shown - record.began:.1f} s"
                )
                + ("" if back is None else f", healthy {back - until:+.1f} s from the end")
            )
            # No service blocks: its loop turns, however long the silence.
            if beat > TURN_MAX_S[name]:
                failures.append(f"{fault}: {name} stopped turning ({beat:.1f} s)")
            if fault.kind == "outage" and fault.down_s < SOCKET_TIMEOUT_S + 1.0:
                continue  # answered before any call timed out: nothing to show
            # Silent longer than the socket timeout: the condition shows, within it, and ends.
            if not warned or warned[0] > SOCKET_TIMEOUT_S + 2.0:
                failures.append(f"{fault}: {name} did not report it in time: {warned}")
            if fault.kind == "outage" and fault.down_s >= SOCKET_TIMEOUT_S + 2.0 and shown is None:
                failures.append(f"{fault}: {name}'s health never named Redis")
            if back is None:
                failures.append(f"{fault}: {name} never healthy again")
        unread = max((n for at, n in watched.unread if record.began <= at <= until), default=0)
        buffered = max((n for at, n in watched.buffered if record.began <= at <= until), default=0)
        report.append(
            f"  line: at most {unread} bytes unread; ingest buffered up to {buffered:.0f} frames"
        )
        if unread > 1024:
            failures.append(f"{fault}: ingest stopped reading the port ({unread} bytes)")
        long = fault.kind == "outage" and fault.down_s >= SOCKET_TIMEOUT_S
        if long and buffered < 0.5 * fault.down_s * FRAMES_PER_S:
            failures.append(f"{fault}: ingest buffered only {buffered:.0f} frames")

    delivery = read_delivery(client, keys, watch.snapshot(), seq_of, tag)
    check_delivery(client, keys, delivery, topic_root=topic_root, tag=tag)
    client.close()
    publisher = supervisor.current("publisher")
    lost = log_events(publisher, "mqtt_disconnected")
    report.append(
        f"{len(delivery.entries_per_seq)}/{count} readings accepted, {delivery.ingest_repeats} "
        f"written twice by ingest, {delivery.extras} repeated by the publisher, "
        f"{len(proxy.connections())} connections through the proxy"
    )
    print("  " + "\n  ".join(report))

    assert not failures, f"{tag} " + "; ".join(failures)
    check_clean_exit(supervisor, list(PIPELINE), tag)
    assert flow.delivered() == set(range(count)), "the line lost frames: ingest stopped reading"
    assert len(delivery.entries_per_seq) == count, (
        f"{tag} not accepted: {ranges(set(range(count)) - set(delivery.entries_per_seq))}"
    )
    assert not lost, f"{tag} a silent Redis cost the MQTT session: {lost}"
    assert delivery.extras == 0, f"{tag} the publisher repeated {delivery.extras} readings"
    outages = sum(1 for f in schedule if f.kind == "outage")
    assert delivery.ingest_repeats <= WRITE_BATCH_FRAMES * outages, (
        f"{tag} {delivery.ingest_repeats} written twice"
    )
