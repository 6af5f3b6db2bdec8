"""Fault injection: the delivery guarantees of architecture.md hold while services die.

Frames flow at the serial line rate through ingest, two decoders and the publisher, all
processes on a private Redis and a private Mosquitto. A seeded random schedule SIGKILLs every
service kind several times and restarts it, restarts Redis (SIGTERM and SIGKILL: AOF with fsync
always) and stops and restarts the broker. Then the pipeline drains, and the test checks,
independently of the services' own accounting:

- every frame accepted into `{p}:frames` yields exactly one record (no dead letter), and reaches
  an MQTT subscriber that kept a persistent session across the broker restarts, with the
  reading's values and its receive-time stamp;
- duplicates at the subscriber only follow a publisher kill or a broker restart, at most the
  in-flight window each, and stay under 5 % overall;
- both consumer groups end with nothing pending;
- no service exited unless the test killed it, none logged a traceback, and every service stops
  cleanly (exit code 0) on SIGTERM at the end;
- a frame the line delivered but Redis never accepted was written shortly before an ingest kill
  (it was in the killed process's memory); frames the line itself dropped while no ingest read
  the pty are counted and reported.

GATEWAY_CHAOS_SEED replays a schedule (the seed is printed and named in every failure);
GATEWAY_CHAOS_FRAMES changes the number of frames (default 3000); GATEWAY_CHAOS_LOG_LEVEL sets
the services' log level (default info; the logs are in the test's temporary directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from gateway_common.entries import decode_frame, decode_record
from gateway_common.group_info import read_group
from gateway_common.streams import DECODER_GROUP, PUBLISHER_GROUP, StreamKeys
from gateway_devkit.modem_line import LINE_BYTES_PER_S, ModemLine
from gateway_devkit.processes import Supervisor, clean_env
from gateway_devkit.servers import PrivateBroker, PrivateRedis

from .readings import ddata_topic, expected_metrics, frame_of, ranges, reading, seq_of_ddata
from .seeds import choose_seed

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import redis

    from gateway_devkit.mqtt_watch import MqttWatch, Received


pytestmark = [pytest.mark.integration, pytest.mark.system, pytest.mark.chaos]

FRAMES = int(os.environ.get("GATEWAY_CHAOS_FRAMES", "3000"))
WINDOW = 16
"""GATEWAY_WINDOW_MESSAGES given to the publisher: the most a kill or disconnect may repeat."""
CLAIM_IDLE_MS = 2000
DRAIN_TIMEOUT_S = 45.0
STILL_S = 1.5
"""The drain is done once, for this long, ingest has read everything the line delivered and the
frames stream did not grow (and both groups are empty, the subscriber has every reading)."""
PREFIX = "chaos"
TOPIC_ROOT = "chaos"
PROJECT_ID = "proj-chaos"
EDGE_NODE_ID = "edge-chaos"

#: Faults per target and the range of their down time in seconds.
PLAN: dict[str, tuple[int, float, float]] = {
    "ingest": (3, 0.2, 2.5),
    "decoder-1": (2, 0.2, 4.0),
    "decoder-2": (2, 0.2, 4.0),
    "publisher": (3, 0.2, 2.0),
    "redis": (2, 0.3, 2.0),
    "broker": (2, 0.3, 2.5),
}
SERVICES = {
    "ingest": "gateway-ingest",
    "decoder-1": "gateway-decoder",
    "decoder-2": "gateway-decoder",
    "publisher": "gateway-publisher",
}
REPEATING = ("publisher", "broker")
"""Faults after which the publisher may legitimately publish its in-flight window again."""
REPEAT_GRACE_S = 3.0
"""After such a fault is over, how long until the publisher has republished what it had."""


# ----------------------------------------------------------------------------- the faults


@dataclass(frozen=True)
class Fault:
    target: str
    at_s: float
    """Offset from the start of the flow."""
    down_s: float
    sig: signal.Signals

    def __str__(self) -> str:
        return f"{self.at_s:5.2f}s {self.target} {self.sig.name} down {self.down_s:.2f}s"


def fault_schedule(rng: random.Random, flow_s: float) -> list[Fault]:
    """Every target faulted PLAN times, spread over the flow; targets overlap freely."""
    margin = 1.0
    faults: list[Fault] = []
    for target, (count, low, high) in PLAN.items():
        slot = (flow_s - 2 * margin) / count
        signals = [signal.SIGKILL] * count
        if target == "redis":
            signals = [signal.SIGTERM, signal.SIGKILL][:count]
            rng.shuffle(signals)
        elif target == "broker":
            signals = [signal.SIGTERM] * count  # stopped: saves the persistent sessions
        for index in range(count):
            down = rng.uniform(low, min(high, 0.7 * slot))
            at = margin + index * slot + rng.uniform(0, slot - down - 0.1)
            faults.append(Fault(target, at, down, signals[index]))
    return sorted(faults, key=lambda f: f.at_s)


@dataclass
class Done:
    fault: Fault
    began_at: float
    """time.monotonic() when the fault began (the signal was about to be sent)."""
    down_at: float
    """When the target was down (the signal was sent and the process had exited)."""
    victim_started_at: float | None = None
    """For a service: when the incarnation it killed had been started."""
    up_at: float | None = None


@dataclass
class FaultRunner:
    """Carries out a schedule in a thread: take a target down at its time, bring it back up."""

    schedule: list[Fault]
    services: Supervisor
    redis_server: PrivateRedis
    broker: PrivateBroker
    done: list[Done] = field(default_factory=list)
    error: BaseException | None = None
    _abort: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, t0: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(t0,), name="faults", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(10)
            raise AssertionError("the fault schedule did not finish in time")
        if self.error is not None:
            raise AssertionError(
                f"a fault could not be carried out: {self.error!r}"
            ) from self.error

    def _run(self, t0: float) -> None:
        events = sorted(
            [(f.at_s, 0, f) for f in self.schedule]
            + [(f.at_s + f.down_s, 1, f) for f in self.schedule],
            key=lambda e: (e[0], e[1]),
        )
        records: dict[int, Done] = {}
        try:
            for at_s, up, fault in events:
                if self._abort.wait(max(0.0, t0 + at_s - time.monotonic())):
                    return
                if up:
                    self._up(fault.target)
                    records[id(fault)].up_at = time.monotonic()
                else:
                    began = time.monotonic()
                    victim_started_at = None
                    if fault.target in SERVICES:
                        victim_started_at = self.services.current(fault.target).started_at
                    self._down(fault)
                    done = Done(fault, began, time.monotonic(), victim_started_at)
                    records[id(fault)] = done
                    self.done.append(done)
        except BaseException as exc:  # reported by join() in the test's thread
            self.error = exc

    def _down(self, fault: Fault) -> None:
        if fault.target == "redis":
            self.redis_server.stop(fault.sig)
        elif fault.target == "broker":
            self.broker.stop(fault.sig)
        else:
            self.services.kill(fault.target)

    def _up(self, target: str) -> None:
        if target == "redis":
            self.redis_server.start()
        elif target == "broker":
            self.broker.start()
        else:
            start_service(self.services, target)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def redis_server(private_redis: Callable[..., PrivateRedis]) -> PrivateRedis:
    return private_redis(appendfsync="always")  # survives kill -9


@pytest.fixture
def mosquitto(private_broker: Callable[..., PrivateBroker]) -> PrivateBroker:
    # Sessions saved on SIGTERM; no limit on the messages queued for a subscriber cut off by a
    # restart, so it loses nothing.
    return private_broker("max_queued_messages 0")


@pytest.fixture
def paced_line() -> Iterator[ModemLine]:
    line = ModemLine(lossy=True)
    yield line
    line.close()


@pytest.fixture
def durable_subscriber(subscriber: Callable[..., MqttWatch], mosquitto: PrivateBroker) -> MqttWatch:
    """A persistent session (one hour): across a broker restart it gets what was queued."""
    return subscriber(
        "127.0.0.1",
        mosquitto.port,
        f"{TOPIC_ROOT}/#",
        session_expiry_s=3600,
        client_id="chaos-subscriber",
    )


def start_service(services: Supervisor, name: str) -> None:
    services.start_service(name, SERVICES[name], GATEWAY_CONSUMER_NAME=f"chaos-{name}")


@pytest.fixture
def services(
    tmp_path: Path,
    redis_server: PrivateRedis,
    mosquitto: PrivateBroker,
    paced_line: ModemLine,
) -> Iterator[Supervisor]:
    env = clean_env(
        GATEWAY_REDIS_URL=redis_server.url,
        GATEWAY_STREAM_PREFIX=PREFIX,
        GATEWAY_LOG_FORMAT="json",
        GATEWAY_LOG_LEVEL=os.environ.get("GATEWAY_CHAOS_LOG_LEVEL", "info"),
        # ingest
        GATEWAY_SERIAL_PORT=paced_line.path,
        GATEWAY_REDIS_BACKOFF_MAX_S="0.5",
        GATEWAY_REOPEN_BACKOFF_MAX_S="0.5",
        # decoder
        GATEWAY_CLAIM_IDLE_MS=str(CLAIM_IDLE_MS),
        GATEWAY_CLAIM_INTERVAL_MS="500",
        GATEWAY_BLOCK_MS="500",
        # publisher
        GATEWAY_MQTT_HOST="127.0.0.1",
        GATEWAY_MQTT_PORT=str(mosquitto.port),
        GATEWAY_MQTT_TLS="false",
        GATEWAY_MQTT_CLIENT_ID="chaos-gateway",
        GATEWAY_PROJECT_ID=PROJECT_ID,
        GATEWAY_EDGE_NODE_ID=EDGE_NODE_ID,
        GATEWAY_TOPIC_ROOT=TOPIC_ROOT,
        GATEWAY_WINDOW_MESSAGES=str(WINDOW),
        GATEWAY_RECONNECT_MIN_S="1",
        GATEWAY_RECONNECT_MAX_S="1",
    )
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    supervisor = Supervisor(log_dir, env)
    yield supervisor
    supervisor.stop_all(signal.SIGKILL)


def event_delays(services: Supervisor, name: str, event: str) -> list[float | None]:
    """Per incarnation, seconds from its start to its first log line of `event` (JSON logs)."""
    delays: list[float | None] = []
    for incarnation in services.incarnations(name):
        delay = None
        for line in incarnation.log().splitlines():
            if f'"event": "{event}"' in line:
                with contextlib.suppress(ValueError, KeyError):
                    stamp = datetime.fromisoformat(json.loads(line)["timestamp"])
                    delay = round(stamp.timestamp() - incarnation.started_wall, 2)
                break
        delays.append(delay)
    return delays


# ----------------------------------------------------------------------------- checks


def group_state(client: redis.Redis, stream: str, group: str) -> tuple[int, int | None]:
    """(pending, lag) of a consumer group, lag as the services read it (group_info: 0 once the
    group was delivered the stream's last entry, whatever Redis 7.0's counter says after
    reloading a rewritten AOF; docs/reliability.md, 3)."""
    info = read_group(client, stream, group)
    assert info is not None, f"no group {group} on {stream}"
    return info.pending, info.lag


@dataclass(frozen=True)
class Accepted:
    entry_id: str
    seq: int
    received_at: float


def accepted_frames(client: redis.Redis, seq_of: dict[bytes, int]) -> list[Accepted]:
    """Every entry of `{p}:frames`, as the reading it carries."""
    out = []
    entries: Any = client.xrange(StreamKeys(PREFIX).frames)
    for entry_id, fields in entries:
        frame = decode_frame(fields[b"d"])
        seq = seq_of.get(frame.alp)
        assert seq is not None, f"an accepted frame was never sent: {frame.alp.hex()}"
        out.append(Accepted(entry_id.decode(), seq, frame.received_at))
    return out


def seq_in(message: Received) -> int | None:
    return seq_of_ddata(message.topic, message.payload)


def ingest_loss_windows(done: list[Done], flow_start: float) -> list[tuple[float, float]]:
    """When a frame written to the line may die with a killed ingest, unaccepted.

    A healthy ingest writes what it reads to Redis within milliseconds, so a kill loses the
    frames of about the last second. It loses more when it held frames because Redis was down,
    or when it had only just started and was reading the backlog the pty kept while no ingest
    ran: then anything written since the previous ingest kill.
    """
    outages = [
        (d.began_at, (d.up_at or d.down_at) + 2.0) for d in done if d.fault.target == "redis"
    ]
    kills = sorted(
        (d.down_at, d.victim_started_at or flow_start) for d in done if d.fault.target == "ingest"
    )
    windows = []
    previous = flow_start
    for killed, started in kills:
        held = killed - started < 3.0 or any(a <= killed and b >= started for a, b in outages)
        windows.append(((previous if held else killed) - 1.0, killed))
        previous = killed
    return windows


@dataclass(frozen=True)
class Cluster:
    """Publisher kills and broker restarts close enough that one's repeats may follow another."""

    began_at: float
    faults: int
    name: str


def repeating_clusters(done: list[Done]) -> list[Cluster]:
    """The faults that let the publisher repeat its window, merged when they overlap.

    A repeat arrives once the publisher is connected again, which can be after the next fault
    began (a kill while the broker is away): such faults form one cluster, allowed a window
    each.
    """
    clusters: list[tuple[float, float, list[str]]] = []
    for d in sorted((d for d in done if d.fault.target in REPEATING), key=lambda d: d.began_at):
        end = (d.up_at or d.down_at) + REPEAT_GRACE_S
        if clusters and d.began_at <= clusters[-1][1]:
            began, last_end, names = clusters[-1]
            clusters[-1] = (began, max(last_end, end), [*names, str(d.fault).strip()])
        else:
            clusters.append((d.began_at, end, [str(d.fault).strip()]))
    return [Cluster(began, len(names), " + ".join(names)) for began, _end, names in clusters]


# ----------------------------------------------------------------------------- the test


def test_faults_lose_no_accepted_frame(
    redis_server: PrivateRedis,
    mosquitto: PrivateBroker,
    paced_line: ModemLine,
    durable_subscriber: MqttWatch,
    services: Supervisor,
) -> None:
    seed = choose_seed("GATEWAY_CHAOS_SEED")
    frames = [frame_of(seq) for seq in range(FRAMES)]
    seq_of = {frame[7:]: seq for seq, frame in enumerate(frames)}
    flow_s = sum(map(len, frames)) / LINE_BYTES_PER_S
    schedule = fault_schedule(random.Random(seed), flow_s)
    tag = f"[seed {seed}]"
    print(f"\nchaos seed {seed} (GATEWAY_CHAOS_SEED={seed} replays it): {FRAMES} frames")
    for fault in schedule:
        print(f"  {fault}")

    for name in SERVICES:
        start_service(services, name)
    services.wait_log("ingest", "serial_opened")
    services.wait_log("publisher", "mqtt_connected")
    for name in ("decoder-1", "decoder-2"):
        services.wait_log(name, "decoder_started")

    # ---- frames at line rate while the faults happen
    runner = FaultRunner(schedule, services, redis_server, mosquitto)
    started = time.monotonic()
    runner.start(started)
    sent_at = paced_line.paced(frames, clock=time.monotonic)
    flowed_s = time.monotonic() - started
    runner.join(timeout_s=30)

    # ---- drain: frames stream still, both groups empty, every accepted reading received
    client = redis_server.client()
    keys = StreamKeys(PREFIX)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    last_len, still_since = -1, time.monotonic()
    while True:
        frames_len = client.xlen(keys.frames)
        unread = paced_line.unread()
        if frames_len != last_len or unread or not services.current("ingest").alive():
            last_len, still_since = frames_len, time.monotonic()
        decoder_state = group_state(client, keys.frames, DECODER_GROUP)
        publisher_state = group_state(client, keys.records, PUBLISHER_GROUP)
        received = {seq_in(m) for m in durable_subscriber.snapshot()}
        missing = {a.seq for a in accepted_frames(client, seq_of)} - received
        if (
            time.monotonic() - still_since >= STILL_S
            and decoder_state == (0, 0)
            and publisher_state == (0, 0)
            and not missing
        ):
            break
        if time.monotonic() > deadline:
            pytest.fail(
                f"{tag} not drained after {DRAIN_TIMEOUT_S} s: {unread} bytes unread on the line, "
                f"{frames_len} frames, (pending, lag) "
                f"decoder {decoder_state}, publisher {publisher_state}, {len(missing)} accepted "
                f"readings not received ({ranges(missing)}), subscriber session_present "
                f"{durable_subscriber.connections}\n" + services.logs()
            )
        time.sleep(0.25)
    drained_s = time.monotonic() - started - flowed_s
    time.sleep(1.0)  # a late duplicate would arrive now
    messages = durable_subscriber.snapshot()

    # ---- what happened, measured from outside the services
    accepted = accepted_frames(client, seq_of)
    entries_per_seq = Counter(a.seq for a in accepted)
    stamps: dict[int, set[float]] = defaultdict(set)
    for a in accepted:
        stamps[a.seq].add(a.received_at)
    delivered = {seq for seq, at in enumerate(sent_at) if at is not None}
    not_accepted = delivered - set(entries_per_seq)
    windows = ingest_loss_windows(runner.done, started)
    unexplained = {
        seq for seq in not_accepted if not any(a <= (sent_at[seq] or 0) <= b for a, b in windows)
    }
    copies: dict[int, list[Received]] = defaultdict(list)
    for message in messages:
        if (seq := seq_in(message)) is not None:
            copies[seq].append(message)
    clusters = repeating_clusters(runner.done)
    extras_after: Counter[str] = Counter()
    redelivered = 0
    for seq, seen in copies.items():
        for message in sorted(seen, key=lambda m: m.monotonic)[entries_per_seq[seq] :]:
            if message.dup:
                redelivered += 1  # the broker's redelivery to this subscriber
                continue
            before = [c for c in clusters if c.began_at <= message.monotonic]
            extras_after[before[-1].name if before else "no fault"] += 1
    extras = sum(len(seen) for seen in copies.values()) - len(accepted)
    # protocol.md: (DEVICE_ID, timestamp) identifies a reading. Frames of one serial read share
    # their receive time, so distinct readings of one device in one read would share it too.
    identities = {(reading(seq)[0], round(rx * 1000)) for seq, rxs in stamps.items() for rx in rxs}
    shared_identity = len(entries_per_seq) - len(identities)
    ingest_repeats = len(accepted) - len(entries_per_seq)
    print(
        f"chaos seed {seed}: flow {flowed_s:.1f} s, drained {drained_s:.1f} s later; "
        f"{len(entries_per_seq)}/{FRAMES} readings accepted; {FRAMES - len(delivered)} lost on "
        f"the line while no ingest read the pty; {len(not_accepted)} read by ingests killed "
        f"before Redis took them; {ingest_repeats} written twice by ingest; {extras} extra "
        f"copies at the subscriber ({redelivered} broker redeliveries), after: "
        f"{dict(extras_after)}; subscriber session_present {durable_subscriber.connections}; "
        f"{shared_identity} readings share (DEVICE_ID, timestamp) with another\n"
        f"  accepted {ranges(set(entries_per_seq))}\n"
        f"  lost on the line {ranges(set(range(FRAMES)) - delivered)}\n"
        f"  lost with a killed ingest {ranges(not_accepted)}\n"
        f"  ingest port opened after {event_delays(services, 'ingest', 'serial_opened')} s"
    )

    # ---- no service exited by itself, none logged a traceback, all stop cleanly
    crashes = services.crashes()
    assert not crashes, f"{tag} services exited by themselves: {crashes}"
    exit_codes = {name: services.stop(name) for name in SERVICES}
    assert exit_codes == dict.fromkeys(SERVICES, 0), f"{tag} exit codes on SIGTERM: {exit_codes}"
    tracebacks = [
        name
        for name in SERVICES
        if any("Traceback" in i.log() for i in services.incarnations(name))
    ]
    assert not tracebacks, f"{tag} tracebacks in {tracebacks}\n{services.logs()}"

    # ---- ingest: only frames a killed ingest held are missing; repeats only across Redis faults
    assert not unexplained, (
        f"{tag} frames the line delivered and no killed ingest can explain were never accepted: "
        f"{ranges(unexplained)} (loss windows, s from the start: "
        f"{[(round(a - started, 2), round(b - started, 2)) for a, b in windows]})"
    )
    assert ingest_repeats == 0 or any(d.fault.target == "redis" for d in runner.done), tag
    assert all(len(s) == 1 for s in stamps.values()), (
        f"{tag} one frame accepted with two receive times"
    )

    # ---- decoder: exactly one record per accepted frame, no dead letter
    entries: Any = client.xrange(keys.records)
    per_frame = Counter(decode_record(fields[b"d"]).frame_id for _id, fields in entries)
    twice = [frame_id for frame_id, n in per_frame.items() if n > 1]
    assert not twice, f"{tag} frames that became two records: {twice[:10]}"
    assert set(per_frame) == {a.entry_id for a in accepted}, f"{tag} records != accepted frames"
    assert client.xlen(keys.dead) == 0, f"{tag} dead letters: {client.xrange(keys.dead, count=5)}"

    # ---- nothing pending (XPENDING this time, not the XINFO the drain used)
    for stream, group in ((keys.frames, DECODER_GROUP), (keys.records, PUBLISHER_GROUP)):
        summary: Any = client.xpending(stream, group)
        assert summary["pending"] == 0, f"{tag} {group}: {summary}"
    client.close()

    # ---- publisher: every accepted reading reached the subscriber, with its values and stamp
    missing = set(entries_per_seq) - set(copies)
    assert not missing, f"{tag} accepted readings never received: {ranges(missing)}"
    unknown = set(copies) - set(entries_per_seq)
    assert not unknown, f"{tag} readings received but never accepted: {ranges(unknown)}"
    for seq, seen in copies.items():
        (received_at,) = stamps[seq]
        topic = ddata_topic(TOPIC_ROOT, PROJECT_ID, EDGE_NODE_ID, seq)
        for message in seen:
            assert message.topic == topic, (tag, seq)
            got = json.loads(message.payload)["metrics"]
            assert [(m["name"], m["dataType"], m["value"]) for m in got] == expected_metrics(seq)
            assert {m["timestamp"] for m in got} == {round(received_at * 1000)}, (tag, seq)

    # ---- duplicates: only after a publisher kill or a broker restart, a window at most each
    assert "no fault" not in extras_after, f"{tag} duplicates no fault explains: {extras_after}"
    allowed = {c.name: WINDOW * c.faults for c in clusters}
    over = {name: n for name, n in extras_after.items() if n > allowed.get(name, 0)}
    assert not over, f"{tag} more than the window ({WINDOW}) repeated per fault: {over}"
    assert extras <= 0.05 * len(accepted), f"{tag} {extras} duplicates for {len(accepted)} frames"
    # The line model loses frames only while no ingest runs: most frames must get through.
    # A floor against a vacuous pass (the line model loses frames only while no ingest reads).
    assert len(entries_per_seq) >= 0.3 * FRAMES, f"{tag} only {len(entries_per_seq)} accepted"
