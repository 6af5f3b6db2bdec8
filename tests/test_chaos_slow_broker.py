"""Scenario 5 of issue 14: a slow broker.

A TCP proxy (gateway_devkit.tcp_proxy) delays everything the broker sends to the publisher by
500 ms, so each PUBACK (and the CONNACK, and each PINGRESP) is 500 ms late, while readings flow
at the serial line rate through ingest, a decoder and the publisher (processes, private Redis
and Mosquitto). With a window of 16 messages the publisher then manages at most 32 messages a
second, well below the line's 113 frames a second, so a backlog builds. The test checks, from
outside the publisher:

- the backlog stays in Redis: the publisher group's lag grows, its pending entries (what the
  publisher has read: its read-ahead, the window, the acknowledgements being batched) stay
  within their bound;
- the publisher's memory stays bounded: its RSS, sampled from /proc every half second, grows by
  less than `RSS_GROWTH_MAX_MB` after the warm-up while the backlog grows by thousands;
- the metrics show it: `gateway_mqtt_puback_seconds` (publish -> PUBACK) sits at the delay,
  `gateway_publish_latency_seconds` (receive -> PUBACK) and `gateway_backlog_records` grow;
- a slow broker is not a dead one: the link is never given up, even with the smallest
  keep-alive (5 s);
- nothing is dropped: once the delay is removed the backlog drains and every accepted reading
  reaches the subscriber once.

`make test` flows 2,200 frames (about 20 s); `make chaos` 12,000 (about 106 s).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from gateway_common.streams import PUBLISHER_GROUP, StreamKeys
from gateway_devkit.bench.memory import memory_kb
from gateway_devkit.modem_line import ModemLine
from gateway_devkit.processes import Supervisor
from gateway_devkit.scrape import scrape
from gateway_devkit.tcp_proxy import Mode, TcpProxy
from gateway_publisher.options import PublisherOptions

from .delivery import (
    FRAMES_PER_S,
    PIPELINE,
    WINDOW,
    PacedFlow,
    check_clean_exit,
    check_delivery,
    group_state,
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
from .seeds import scaled

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis

    from gateway_devkit.mqtt_watch import MqttWatch
    from gateway_devkit.scrape import Samples
    from gateway_devkit.servers import PrivateBroker, PrivateRedis

pytestmark = [pytest.mark.integration, pytest.mark.system, pytest.mark.chaos]

DELAY_S = 0.5
"""With the publisher's WINDOW of 16: at most WINDOW / DELAY_S = 32 messages a second."""
KEEPALIVE_S = 5
READ_BATCH = PublisherOptions().read_batch
PENDING_MAX = READ_BATCH + 2 * WINDOW
"""What the publisher may have read and not acknowledged: its read-ahead, the messages in
flight, the answered ones whose XACK is being batched (never more than the window together)."""
WARM_UP_S = 3.0
RSS_GROWTH_MAX_MB = 4.0
DRAIN_TIMEOUT_S = 120.0


@dataclass
class Watched:
    """Every half second (times: seconds from the start of the flow)."""

    rss_kb: list[tuple[float, int]] = field(default_factory=list)
    """The publisher's VmRSS."""
    group: list[tuple[float, int, int]] = field(default_factory=list)
    """(pending, lag) of the publisher group."""


def watch(
    pid: int,
    client_of: Callable[[], redis.Redis],
    keys: StreamKeys,
    t0: float,
    stop: threading.Event,
) -> Watched:
    samples = Watched()
    client = client_of()

    def run() -> None:
        while not stop.wait(0.5):
            at = time.monotonic() - t0
            samples.rss_kb.append((at, memory_kb(pid)["VmRSS"]))
            pending, lag = group_state(client, keys.records, PUBLISHER_GROUP)
            samples.group.append((at, pending, lag or 0))

    threading.Thread(target=run, name="watch-publisher", daemon=True).start()
    return samples


def histogram(metrics: Samples, name: str) -> dict[str, float]:
    """A histogram's cumulative buckets by `le`, with `count` and `sum`."""
    out = {le: v for (n, labels), v in metrics.items() if n == f"{name}_bucket" for _, le in labels}
    out["count"] = metrics[(f"{name}_count", ())]
    out["sum"] = metrics[(f"{name}_sum", ())]
    return out


def test_a_slow_broker_keeps_the_backlog_in_redis(
    private_redis: Callable[..., PrivateRedis],
    mosquitto: PrivateBroker,
    paced_line: ModemLine,
    subscriber: Callable[..., MqttWatch],
    supervisor: Supervisor,
) -> None:
    count = scaled(2200, 12000)
    tag = f"[slow broker, {count} frames]"
    redis_server = private_redis()
    prefix = topic_root = "slow-broker"
    keys = StreamKeys(prefix)
    watch_mqtt = watch_readings(subscriber, mosquitto, topic_root)
    ports = pipeline_ports()
    port = ports["publisher"]
    with TcpProxy("127.0.0.1", mosquitto.port) as proxy:
        proxy.delay_downstream(DELAY_S)
        supervisor.env = pipeline_env(
            redis_url=redis_server.url,
            mqtt_port=proxy.port,
            line=paced_line,
            prefix=prefix,
            topic_root=topic_root,
            KEEPALIVE_S=str(KEEPALIVE_S),
            WINDOW_MESSAGES=str(WINDOW),
            BACKLOG_INTERVAL_MS="500",
        )
        start_pipeline(supervisor, ports, consumer_prefix="slow-")

        stop = threading.Event()
        flow = PacedFlow(paced_line, count).start()
        samples = watch(
            supervisor.current("publisher").pid, redis_server.client, keys, flow.started_at, stop
        )
        flow.join(timeout_s=count / FRAMES_PER_S + 30)
        stop.set()
        metrics = scrape(port)
        backlog_gauge = metrics[("gateway_backlog_records", ())]

        proxy.delay_downstream(0)
        client = redis_server.client()
        seq_of = seq_of_alp(count)
        drained_s = wait_drained(
            client, keys, paced_line, watch_mqtt, seq_of, timeout_s=DRAIN_TIMEOUT_S, tag=tag,
            logs=supervisor.logs, accept_all=count,
        )  # fmt: skip
        time.sleep(1.0)  # a late repeat would arrive now
        connections = proxy.connections()

    publisher = supervisor.current("publisher")
    flow_s = (flow.ended_at or 0.0) - flow.started_at
    warm = [kb for at, kb in samples.rss_kb if at >= WARM_UP_S]
    assert warm, f"{tag} no RSS sample after the warm-up"
    growth_mb = (max(warm) - warm[0]) / 1024
    most_pending = max(p for _, p, _ in samples.group)
    backlog = max(p + lag for _, p, lag in samples.group)
    puback = histogram(metrics, "gateway_mqtt_puback_seconds")
    latency = histogram(metrics, "gateway_publish_latency_seconds")
    print(
        f"\n{tag} flow {flow_s:.1f} s, PUBACKs {DELAY_S} s late, window {WINDOW}: backlog in "
        f"Redis up to {backlog} records (gauge {backlog_gauge:.0f} at the end), publisher "
        f"pending at most {most_pending} (bound {PENDING_MAX}); publisher RSS "
        f"{warm[0] / 1024:.1f} MB after {WARM_UP_S:.0f} s, at most {max(warm) / 1024:.1f} MB "
        f"(+{growth_mb:.2f} MB); PUBACK round trip: {puback['count']:.0f} answers, mean "
        f"{puback['sum'] / puback['count']:.3f} s, {puback['1.0']:.0f} within 1 s; receive -> "
        f"PUBACK: {latency['count']:.0f} records, mean {latency['sum'] / latency['count']:.1f} s, "
        f"{latency['count'] - latency['10.0']:.0f} over 10 s; drained {drained_s:.1f} s after "
        f"the delay was removed"
    )
    print(
        "  RSS MB by second: "
        + " ".join(f"{at:.0f}:{kb / 1024:.1f}" for at, kb in samples.rss_kb[::4])
    )
    print(
        "  (pending, lag) by second: "
        + " ".join(f"{at:.0f}:{p},{lag}" for at, p, lag in samples.group[::4])
    )

    # A slow broker is not a dead one: one connection all along.
    assert not log_events(publisher, "mqtt_link_silent"), tag
    assert not log_events(publisher, "mqtt_disconnected"), tag
    assert [c.mode for c in connections] == [Mode.FORWARD], f"{tag} {connections}"

    # The backlog is in Redis, not in the publisher.
    assert backlog >= 0.3 * count, f"{tag} no backlog built up: {backlog}"
    assert backlog_gauge >= 0.3 * count, f"{tag} gateway_backlog_records {backlog_gauge}"
    assert most_pending <= PENDING_MAX, f"{tag} the publisher held {most_pending} records"
    assert growth_mb <= RSS_GROWTH_MAX_MB, f"{tag} publisher RSS grew {growth_mb:.2f} MB"

    # The metrics show it: each answer late by the delay, records late by the backlog.
    assert puback["count"] >= WINDOW, tag
    assert puback["0.25"] == 0, f"{tag} PUBACKs faster than the delay: {puback}"
    assert puback["1.0"] >= 0.95 * puback["count"], f"{tag} PUBACKs later than the delay: {puback}"
    assert latency["count"] - latency["10.0"] > 0, f"{tag} no record waited 10 s: {latency}"

    # Nothing dropped, nothing repeated.
    delivery = read_delivery(client, keys, watch_mqtt.snapshot(), seq_of, tag)
    check_delivery(client, keys, delivery, topic_root=topic_root, tag=tag)
    client.close()
    check_clean_exit(supervisor, list(PIPELINE), tag)
    assert flow.delivered() == set(range(count)), "the line lost frames: ingest stopped reading"
    assert len(delivery.entries_per_seq) == count, (
        f"{tag} not accepted: {ranges(set(range(count)) - set(delivery.entries_per_seq))}"
    )
    assert delivery.ingest_repeats == 0, tag
    assert delivery.extras == 0, f"{tag} {delivery.extras} readings published twice"
