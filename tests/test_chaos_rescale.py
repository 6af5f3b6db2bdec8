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
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from gateway_common.entries import decode_record
from gateway_common.streams import DECODER_GROUP, PUBLISHER_GROUP, StreamKeys
from gateway_devkit.modem_line import LINE_BYTES_PER_S, ModemLine
from gateway_devkit.polling import wait_until
from gateway_devkit.processes import BIN, Child, Supervisor, clean_env
from gateway_devkit.servers import PrivateBroker, PrivateRedis

from .readings import ddata_topic, expected_metrics, frame_of, ranges
from .seeds import choose_seed, scaled
from .test_chaos import PREFIX, accepted_frames, group_state, seq_in

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import redis

    from gateway_devkit.mqtt_watch import MqttWatch, Received

pytestmark = [pytest.mark.integration, pytest.mark.system, pytest.mark.chaos]

FRAMES = scaled(800, 3000)
CLAIM_IDLE_MS = 2000
"""GATEWAY_CLAIM_IDLE_MS (30 s by default): the hung replica's frames wait this long."""
STOP_TIMEOUT_S = 1.0
"""How long the hung replica is given to stop on SIGTERM before SIGKILL (Docker: 10 s)."""
DRAIN_TIMEOUT_S = 45.0
TOPIC_ROOT = "rescale"
PROJECT_ID = "proj-rescale"
EDGE_NODE_ID = "edge-rescale"


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
class Rescaler:
    """Carries out the steps in a thread while the frames flow."""

    steps: list[tuple[float, str, Callable[[], object]]]
    error: BaseException | None = None
    done: list[tuple[float, str]] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self, t0: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(t0,), name="rescale", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the rescaling steps did not finish in time"
        if self.error is not None:
            raise AssertionError(f"a rescaling step failed: {self.error!r}") from self.error

    def _run(self, t0: float) -> None:
        try:
            for at_s, what, action in self.steps:
                time.sleep(max(0.0, t0 + at_s - time.monotonic()))
                action()
                self.done.append((round(time.monotonic() - t0, 2), what))
        except BaseException as exc:  # reported by join() in the test's thread
            self.error = exc


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def redis_server(private_redis: Callable[..., PrivateRedis]) -> PrivateRedis:
    return private_redis(appendfsync="always")


@pytest.fixture
def mosquitto(private_broker: Callable[..., PrivateBroker]) -> PrivateBroker:
    return private_broker("max_queued_messages 0")


@pytest.fixture
def line() -> Iterator[ModemLine]:
    line = ModemLine()  # ingest runs throughout: nothing is lost on the line
    yield line
    line.close()


@pytest.fixture
def services(
    tmp_path: Path, redis_server: PrivateRedis, mosquitto: PrivateBroker, line: ModemLine
) -> Iterator[Supervisor]:
    env = clean_env(
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_STREAM_PREFIX=PREFIX,
        GATEWAY_LOG_FORMAT="json",
        GATEWAY_LOG_LEVEL=os.environ.get("GATEWAY_CHAOS_LOG_LEVEL", "info"),
        GATEWAY_SERIAL_PORT=line.path,
        GATEWAY_CLAIM_IDLE_MS=str(CLAIM_IDLE_MS),
        GATEWAY_CLAIM_INTERVAL_MS="500",
        GATEWAY_BLOCK_MS="500",
        GATEWAY_MQTT_HOST="127.0.0.1",
        GATEWAY_MQTT_PORT=str(mosquitto.port),
        GATEWAY_MQTT_TLS="false",
        GATEWAY_MQTT_CLIENT_ID="rescale-gateway",
        GATEWAY_PROJECT_ID=PROJECT_ID,
        GATEWAY_EDGE_NODE_ID=EDGE_NODE_ID,
        GATEWAY_TOPIC_ROOT=TOPIC_ROOT,
    )
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    supervisor = Supervisor(log_dir, env)
    yield supervisor
    for child in supervisor.children:
        if child.alive():
            os.kill(child.pid, signal.SIGCONT)  # a hung one must be able to die
    supervisor.stop_all(signal.SIGKILL)


@pytest.fixture
def watch(subscriber: Callable[..., MqttWatch], mosquitto: PrivateBroker) -> MqttWatch:
    return subscriber("127.0.0.1", mosquitto.port, f"{TOPIC_ROOT}/#")


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
    redis_server: PrivateRedis, line: ModemLine, watch: MqttWatch, services: Supervisor
) -> None:
    seed = choose_seed("GATEWAY_CHAOS_SEED")
    rng = random.Random(seed)
    tag = f"[seed {seed}]"
    frames = [frame_of(seq) for seq in range(FRAMES)]
    seq_of = {frame[7:]: seq for seq, frame in enumerate(frames)}
    flow_s = sum(map(len, frames)) / LINE_BYTES_PER_S
    down_at = rng.uniform(0.2, 0.4) * flow_s
    up_at = rng.uniform(0.55, 0.75) * flow_s
    client = redis_server.client()
    keys = StreamKeys(PREFIX)
    decoders = Decoders(services, rng)
    print(
        f"\nrescale seed {seed} (GATEWAY_CHAOS_SEED={seed} replays it): {FRAMES} frames over "
        f"{flow_s:.1f} s; 3 -> 1 at {down_at:.2f} s, 1 -> 4 at {up_at:.2f} s"
    )

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
    started = time.monotonic()
    rescaler.start(started)
    sent_at = line.paced(frames, clock=time.monotonic)
    rescaler.join(timeout_s=30)
    assert all(at is not None for at in sent_at)
    assert decoders.hung is not None
    for name in decoders.live[-3:]:
        services.wait_log(name, "decoder_started")

    # ---- drain: every frame accepted, both groups empty, every reading received
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        decoder_state = group_state(client, keys.frames, DECODER_GROUP)
        publisher_state = group_state(client, keys.records, PUBLISHER_GROUP)
        received = {seq_in(m) for m in watch.snapshot()}
        missing = set(range(FRAMES)) - received
        if (
            client.xlen(keys.frames) == FRAMES
            and decoder_state == (0, 0)
            and publisher_state == (0, 0)
            and not missing
        ):
            break
        if time.monotonic() > deadline:
            pytest.fail(
                f"{tag} not drained after {DRAIN_TIMEOUT_S} s: {client.xlen(keys.frames)} "
                f"frames, (pending, lag) decoder {decoder_state}, publisher {publisher_state}, "
                f"{len(missing)} readings not received ({ranges(missing)})\n" + services.logs()
            )
        time.sleep(0.25)
    drained_s = time.monotonic() - started
    time.sleep(1.0)  # a late duplicate would arrive now
    messages = watch.snapshot()
    claimed = [
        line
        for name in decoders.live
        for line in services.current(name).log().splitlines()
        if '"frames_claimed"' in line
    ]
    print(
        f"rescale seed {seed}: steps {rescaler.done}; drained {drained_s:.1f} s after the "
        f"start; hung replica {decoders.hung} held {decoders.hung_pending} frames, claimed by "
        f"the live ones in {len(claimed)} batches; removed replicas exited "
        f"{decoders.removed_exit_codes}"
    )

    # ---- no service exited by itself, none logged a traceback; removed ones stopped cleanly
    assert not services.crashes(), f"{tag} services exited by themselves: {services.crashes()}"
    assert decoders.removed_exit_codes == dict.fromkeys(decoders.removed_exit_codes, 0), tag
    assert len(decoders.removed_exit_codes) == 1, decoders.removed_exit_codes
    tracebacks = [c.log_path.name for c in services.children if "Traceback" in c.log()]
    assert not tracebacks, f"{tag} tracebacks in {tracebacks}\n{services.logs()}"

    # ---- ingest: every frame accepted once
    accepted = accepted_frames(client, seq_of)
    assert sorted(a.seq for a in accepted) == list(range(FRAMES)), f"{tag} frames not accepted once"
    stamp = {a.seq: a.received_at for a in accepted}

    # ---- decoder: exactly one record per frame, no dead letter, nothing pending
    entries: Any = client.xrange(keys.records)
    per_frame = Counter(decode_record(fields[b"d"]).frame_id for _id, fields in entries)
    twice = [frame_id for frame_id, n in per_frame.items() if n > 1]
    assert not twice, f"{tag} frames that became two records: {twice[:10]}"
    assert set(per_frame) == {a.entry_id for a in accepted}, f"{tag} records != accepted frames"
    assert client.xlen(keys.dead) == 0, f"{tag} dead letters: {client.xrange(keys.dead, count=5)}"
    for stream, group in ((keys.frames, DECODER_GROUP), (keys.records, PUBLISHER_GROUP)):
        summary: Any = client.xpending(stream, group)
        assert summary["pending"] == 0, f"{tag} {group}: {summary}"
    # the hung replica's frames were taken over by a live replica, not lost with it
    assert decoders.hung_pending > 0
    assert claimed, f"{tag} nothing claimed from the hung replica {decoders.hung}"

    # ---- publisher: every reading exactly once at the subscriber, with its values and stamp
    copies: dict[int, list[Received]] = defaultdict(list)
    for message in messages:
        if (seq := seq_in(message)) is not None:
            copies[seq].append(message)
    assert set(copies) == set(range(FRAMES)), f"{tag} {ranges(set(range(FRAMES)) - set(copies))}"
    repeated = {seq: len(seen) for seq, seen in copies.items() if len(seen) > 1}
    assert not repeated, f"{tag} readings received more than once: {repeated}"
    for seq, (message,) in copies.items():
        assert message.topic == ddata_topic(TOPIC_ROOT, PROJECT_ID, EDGE_NODE_ID, seq), (tag, seq)
        got = message.json()["metrics"]
        assert [(m["name"], m["dataType"], m["value"]) for m in got] == expected_metrics(seq)
        assert {m["timestamp"] for m in got} == {round(stamp[seq] * 1000)}, (tag, seq)

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

    # ---- every service stops cleanly
    names = ["ingest", "publisher", *decoders.live]
    exit_codes = {name: services.stop(name) for name in names}
    assert exit_codes == dict.fromkeys(names, 0), f"{tag} exit codes on SIGTERM: {exit_codes}"
    client.close()
