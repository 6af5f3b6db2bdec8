"""Rescaling the decoders under load: 3 -> 1 -> 4 replicas while readings flow at line rate.

Frames flow at the serial line rate through ingest, the decoders and the publisher, all
processes on a private Redis and a private Mosquitto. At seeded random moments the decoders are
rescaled the way `docker compose up -d --scale decoder=N` does it:

- down to 1: the removed replicas get SIGTERM; one of them is hung (SIGSTOP) while it holds
  frames it has read, so its SIGTERM does nothing and it is SIGKILLed at its stop timeout, as
  Docker does with a container that does not stop: its frames stay pending under a consumer
  name that never comes back, until a live replica claims them (GATEWAY_CLAIM_IDLE_MS);
- up to 4: three new replicas, each with a consumer name of its own, as Compose gives new
  containers new host names (the decoder's default consumer name is the host name).

Then the pipeline drains and the test checks from outside the services: every frame accepted
into `{p}:frames` yields exactly one record (no dead letter) and exactly one DDATA at an MQTT
subscriber, with its values and receive-time stamp; nothing is pending in either group; the
hung replica's frames were claimed by a live one; no service crashed or logged a traceback, the
removed replicas exited 0 on SIGTERM and every service stops cleanly at the end. Last, the
consumer names of the gone replicas are still in the group (nothing removes them by itself):
`gatewayctl consumers prune` removes them, and the live replicas go on decoding.

Scales (tests/seeds.py): 800 frames in `make test`, 3000 in `make chaos`; GATEWAY_CHAOS_SEED
replays a schedule.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from gateway_common.streams import DECODER_GROUP, StreamKeys
from gateway_devkit.modem_line import ModemLine
from gateway_devkit.polling import wait_until
from gateway_devkit.processes import BIN, Child, Supervisor
from gateway_devkit.servers import PrivateBroker, PrivateRedis

from .delivery import (
    InBackground,
    PacedFlow,
    check_clean_exit,
    check_delivery,
    group_state,
    line_seconds,
    log_events,
    pipeline_env,
    read_delivery,
    seq_of_alp,
    wait_drained,
    watch_readings,
)
from .readings import frame_of
from .seeds import choose_seed, scaled

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import redis

    from gateway_devkit.mqtt_watch import MqttWatch

pytestmark = [pytest.mark.integration, pytest.mark.system, pytest.mark.chaos]

FRAMES = scaled(800, 3000)
CLAIM_IDLE_MS = 2000
"""GATEWAY_CLAIM_IDLE_MS (30 s by default): the hung replica's frames wait this long."""
STOP_TIMEOUT_S = 1.0
"""How long the hung replica is given to stop on SIGTERM before SIGKILL (Docker: 10 s)."""
DRAIN_TIMEOUT_S = 45.0
PREFIX = TOPIC_ROOT = "rescale"


# ----------------------------------------------------------------------------- the replicas


def replica_name(rng: random.Random) -> str:
    """A new consumer name, like the host name (container id) Compose gives a new replica."""
    return f"{rng.getrandbits(48):012x}"


@dataclass
class Decoders:
    """The decoder replicas, each a service named after its consumer name."""

    services: Supervisor
    rng: random.Random
    live: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    removed_exit_codes: dict[str, int] = field(default_factory=dict)
    hung: str | None = None
    hung_pending: int = 0
    """Frames pending on the hung replica when it was killed."""

    def scale_up(self, count: int) -> list[Child]:
        started = []
        for _ in range(count):
            name = replica_name(self.rng)
            started.append(
                self.services.start_service(name, "gateway-decoder", GATEWAY_CONSUMER_NAME=name)
            )
            self.live.append(name)
        return started

    def scale_down(self, keep: int, client: redis.Redis, *, hang_one: bool) -> None:
        """Remove all but `keep` replicas: SIGTERM, all at once, as Compose does; with
        `hang_one`, one of them hangs first while holding frames, and is SIGKILLed at its stop
        timeout."""
        removed = self.rng.sample(self.live, len(self.live) - keep)
        hung = removed[0] if hang_one else None
        if hung is not None:
            self.hung_pending = hang_holding(self.services.current(hung), client, hung)
            self.hung = hung
        children = [self.services.current(name) for name in removed]
        for child in children:
            child.stopped = True  # the supervisor's own stop() marks it so: not a crash
            child.process.send_signal(signal.SIGTERM)
        for name, child in zip(removed, children, strict=True):
            if name == hung:
                try:
                    child.process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:  # hung: SIGTERM does nothing
                    child.process.kill()
                    child.process.wait(10)
                else:
                    raise AssertionError(f"the hung replica {name} exited on SIGTERM")
            else:
                self.removed_exit_codes[name] = child.process.wait(10)
            self.live.remove(name)
            self.gone.append(name)


def consumer_pending(client: redis.Redis, consumer: str) -> int:
    rows: Any = client.xpending_range(
        StreamKeys(PREFIX).frames, DECODER_GROUP, "-", "+", 10_000, consumername=consumer
    )
    return len(rows)


def hang_holding(child: Child, client: redis.Redis, consumer: str) -> int:
    """SIGSTOP the replica at a moment it holds frames it has read and not handed off; how many.

    A replica waits in XREADGROUP most of the time: stopped there, Redis still delivers it the
    next frames (they become pending on it) but it never hands them off. Stopped between two
    reads instead, it holds nothing: then it runs a moment and is stopped again.
    """
    for _ in range(20):
        os.kill(child.pid, signal.SIGSTOP)
        held = wait_until(lambda: consumer_pending(client, consumer), timeout_s=1.0)
        if held:
            time.sleep(0.2)  # a batch being delivered: let it land whole
            return consumer_pending(client, consumer)
        os.kill(child.pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError(f"decoder {consumer} never held a frame when stopped")


@dataclass
class Rescaler(InBackground):
    """Carries out the steps in a thread while the frames flow."""

    NAME = "rescale"
    LATE = "the rescaling steps did not finish in time"
    FAILED = "a rescaling step failed"

    steps: list[tuple[float, str, Callable[[], object]]]
    done: list[tuple[float, str]] = field(default_factory=list)

    def run(self, t0: float) -> None:
        for at_s, what, action in self.steps:
            if self.until(t0 + at_s):
                return
            action()
            self.done.append((round(time.monotonic() - t0, 2), what))


# ----------------------------------------------------------------------------- fixtures
# redis_server (AOF, fsync always), mosquitto, supervisor: conftest


@pytest.fixture
def line() -> Iterator[ModemLine]:
    line = ModemLine()  # ingest runs throughout: nothing is lost on the line
    yield line
    line.close()


@pytest.fixture
def services(
    supervisor: Supervisor, redis_server: PrivateRedis, mosquitto: PrivateBroker, line: ModemLine
) -> Supervisor:
    """(A hung replica left SIGSTOPped dies of the supervisor's SIGKILL at the end.)"""
    supervisor.env = pipeline_env(
        redis_url=redis_server.url,
        mqtt_port=mosquitto.port,
        line=line,
        prefix=PREFIX,
        topic_root=TOPIC_ROOT,
        CLAIM_IDLE_MS=str(CLAIM_IDLE_MS),
        CLAIM_INTERVAL_MS="500",
        BLOCK_MS="500",
    )
    return supervisor


def gatewayctl(services: Supervisor, *args: str) -> Any:
    result = subprocess.run(
        [str(BIN / "gatewayctl"), *args, "--json"],
        env=services.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def decoder_consumers(services: Supervisor) -> dict[str, int]:
    """Consumer name -> pending, in the group `decoder` (gatewayctl consumers)."""
    rows = gatewayctl(services, "consumers")["consumers"]
    return {r["consumer"]: r["pending"] for r in rows if r["group"] == DECODER_GROUP}


# ----------------------------------------------------------------------------- the test


def test_rescaling_decoders_under_load_loses_nothing(
    redis_server: PrivateRedis,
    mosquitto: PrivateBroker,
    line: ModemLine,
    subscriber: Callable[..., MqttWatch],
    services: Supervisor,
) -> None:
    seed = choose_seed("GATEWAY_CHAOS_SEED")
    rng = random.Random(seed)
    tag = f"[seed {seed}]"
    seq_of = seq_of_alp(FRAMES)
    flow_s = line_seconds(FRAMES)
    down_at = rng.uniform(0.2, 0.4) * flow_s
    up_at = rng.uniform(0.55, 0.75) * flow_s
    client = redis_server.client()
    keys = StreamKeys(PREFIX)
    decoders = Decoders(services, rng)
    print(
        f"\nrescale seed {seed} (GATEWAY_CHAOS_SEED={seed} replays it): {FRAMES} frames over "
        f"{flow_s:.1f} s; 3 -> 1 at {down_at:.2f} s, 1 -> 4 at {up_at:.2f} s"
    )

    watch = watch_readings(subscriber, mosquitto, TOPIC_ROOT)
    services.start_service("ingest", "gateway-ingest")
    services.start_service("publisher", "gateway-publisher", GATEWAY_CONSUMER_NAME="publisher")
    for child in decoders.scale_up(3):
        services.wait_log(child, "decoder_started")
    services.wait_log("ingest", "serial_opened")
    services.wait_log("publisher", "mqtt_connected")

    # ---- frames at line rate while the decoders are rescaled
    rescaler = Rescaler(
        [
            (down_at, "3 -> 1", lambda: decoders.scale_down(1, client, hang_one=True)),
            (up_at, "1 -> 4", lambda: decoders.scale_up(3)),
        ]
    )
    flow = PacedFlow(line, FRAMES).start()
    started = flow.started_at
    rescaler.start(started)
    flow.join(timeout_s=flow_s + 60, tag=tag)
    rescaler.join(timeout_s=30)
    assert flow.delivered() == set(range(FRAMES)), f"{tag} the line lost frames"
    assert decoders.hung is not None
    for name in decoders.live[-3:]:
        services.wait_log(name, "decoder_started")

    # ---- drain: every frame accepted, both groups empty, every reading received
    wait_drained(
        client, keys, line, watch, seq_of, timeout_s=DRAIN_TIMEOUT_S, tag=tag,
        logs=services.logs, accept_all=FRAMES,
    )  # fmt: skip
    drained_s = time.monotonic() - started
    time.sleep(1.0)  # a late duplicate would arrive now
    delivery = read_delivery(client, keys, watch.snapshot(), seq_of, tag)
    claimed = [
        event
        for name in decoders.live
        for event in log_events(services.current(name), "frames_claimed")
    ]
    print(
        f"rescale seed {seed}: steps {rescaler.done}; drained {drained_s:.1f} s after the "
        f"start; hung replica {decoders.hung} held {decoders.hung_pending} frames, claimed by "
        f"the live ones in {len(claimed)} batches; removed replicas exited "
        f"{decoders.removed_exit_codes}"
    )

    # ---- no service exited by itself (tracebacks: check_clean_exit, at the end); the removed
    # ones stopped cleanly
    assert not services.crashes(), f"{tag} services exited by themselves: {services.crashes()}"
    assert decoders.removed_exit_codes == dict.fromkeys(decoders.removed_exit_codes, 0), tag
    assert len(decoders.removed_exit_codes) == 1, decoders.removed_exit_codes

    # ---- ingest: every frame accepted once
    seqs = sorted(a.seq for a in delivery.accepted)
    assert seqs == list(range(FRAMES)), f"{tag} frames not accepted once"

    # ---- decoder: exactly one record per frame, no dead letter, nothing pending; publisher:
    # every reading at the subscriber with its topic, values and stamp
    check_delivery(client, keys, delivery, topic_root=TOPIC_ROOT, tag=tag)
    # the hung replica's frames were taken over by a live replica, not lost with it
    assert decoders.hung_pending > 0
    assert claimed, f"{tag} nothing claimed from the hung replica {decoders.hung}"

    # ---- publisher: every reading exactly once at the subscriber
    repeated = {seq: len(seen) for seq, seen in delivery.copies.items() if len(seen) > 1}
    assert not repeated, f"{tag} readings received more than once: {repeated}"

    # ---- the gone replicas' names stay in the group (0 pending) until pruned; pruning them
    # loses nothing and the live replicas go on (Redis < 7.2 counts a consumer idle from its
    # last read that returned something, so the live ones may be pruned too: their next read
    # recreates them)
    listed = decoder_consumers(services)
    assert set(listed) >= set(decoders.gone), f"{tag} {listed}"
    assert set(listed) <= {*decoders.gone, *decoders.live}, f"{tag} {listed}"
    assert all(pending == 0 for pending in listed.values()), f"{tag} {listed}"
    report = gatewayctl(services, "consumers", "prune", "--idle", "0")
    pruned = {r["consumer"] for r in report["removed"] if r["group"] == DECODER_GROUP}
    assert pruned >= set(decoders.gone), f"{tag} {report}"
    extra = [frame_of(seq) for seq in range(FRAMES, FRAMES + 50)]
    line.write(b"".join(extra))
    assert wait_until(
        lambda: (
            client.xlen(keys.records) == FRAMES + 50
            and group_state(client, keys.frames, DECODER_GROUP) == (0, 0)
        ),
        timeout_s=20,
    ), f"{tag} the live replicas stopped decoding after the prune\n{services.logs()}"
    assert not set(decoder_consumers(services)) & set(decoders.gone), tag

    # ---- every service stops cleanly, no process ever logged a traceback
    check_clean_exit(services, ["ingest", "publisher", *decoders.live], tag)
    client.close()
