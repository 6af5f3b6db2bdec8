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
GATEWAY_CHAOS_FRAMES changes the number of frames (default 3000).
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from gateway_common.entries import decode_frame, decode_record
from gateway_common.serial_protocol import MessageType, encode_frame
from gateway_common.streams import DECODER_GROUP, PUBLISHER_GROUP, StreamKeys
from gateway_simulator.alp import Energy, InterfaceStatus, energy_file, unsolicited_message

from .chaos_rig import (
    DurableSubscriber,
    PacedLine,
    PrivateBroker,
    PrivateRedis,
    ServiceSlot,
    find_binary,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import redis

pytestmark = [pytest.mark.integration, pytest.mark.system]

FRAMES = int(os.environ.get("GATEWAY_CHAOS_FRAMES", "3000"))
WINDOW = 16
"""GATEWAY_WINDOW_MESSAGES given to the publisher: the most a kill or disconnect may repeat."""
CLAIM_IDLE_MS = 2000
DRAIN_TIMEOUT_S = 45.0
STABLE_S = 1.5
"""The frames stream must not grow for this long before the drain counts as done."""
PREFIX = "chaos"
TOPIC_ROOT = "chaos"
PROJECT_ID = "proj-chaos"
EDGE_NODE_ID = "edge-chaos"
DEVICES = tuple(bytes((0x00, 0x0B, 0x57, 0x00, 0x00, 0x91, 0x51, d)) for d in range(5))
ACTIVE_1 = "Énergie active/Phase 1"

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


# ----------------------------------------------------------------------------- the readings


def device_id(address: bytes) -> str:
    return format(int.from_bytes(address, "big"), "X")


def reading(seq: int) -> tuple[bytes, Energy, int]:
    """Reading number `seq`: its sender, its values (active energy phase 1 = seq), link budget."""
    energy = Energy(
        apparent_energy_vah=(3 * seq, 3 * seq + 1, -3 * seq),
        active_energy_wh=(seq, seq + 1, seq + 2),
        current_ma=(seq % 40_000, -(seq % 977), 7),
        voltage_v=(230, 231, seq % 300),
    )
    return DEVICES[seq % len(DEVICES)], energy, 20 + seq % 200


def frame_of(seq: int) -> bytes:
    address, energy, link_budget = reading(seq)
    status = InterfaceStatus(address=address, link_budget=link_budget, sequence=seq % 256)
    alp = unsolicited_message(52, energy_file(energy), status)
    return encode_frame((seq + 1) % 256, MessageType.ALP_DATA, alp)


def expected_metrics(seq: int) -> list[tuple[str, str, Any]]:
    """protocol.md section 4, written out independently of the publisher's code."""
    _address, e, link_budget = reading(seq)
    phases = (1, 2, 3)
    return [
        *((f"Énergie apparente/Phase {p}", "Long", v) for p, v in zip(phases, e.apparent_energy_vah, strict=True)),
        *((f"Énergie active/Phase {p}", "Long", v) for p, v in zip(phases, e.active_energy_wh, strict=True)),
        *((f"Intensité/Phase {p}", "Integer", v) for p, v in zip(phases, e.current_ma, strict=True)),
        *((f"Tension/Phase {p}", "Short", v) for p, v in zip(phases, e.voltage_v, strict=True)),
        ("Force du signal radio DASH7", "Short", link_budget),
        ("État de la liaison Modbus - DASH7", "Boolean", True),
    ]


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
    down_at: float
    up_at: float | None = None


@dataclass
class FaultRunner:
    """Carries out a schedule in a thread: take a target down at its time, bring it back up."""

    schedule: list[Fault]
    slots: dict[str, ServiceSlot]
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
            raise AssertionError(f"a fault could not be carried out: {self.error!r}") from self.error

    def _run(self, t0: float) -> None:
        events = sorted(
            [(f.at_s, 0, f) for f in self.schedule] + [(f.at_s + f.down_s, 1, f) for f in self.schedule],
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
                    self._down(fault)
                    done = Done(fault, time.monotonic())
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
            self.slots[fault.target].kill()

    def _up(self, target: str) -> None:
        if target == "redis":
            self.redis_server.start()
        elif target == "broker":
            self.broker.start()
        else:
            self.slots[target].start()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    binary = find_binary("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(binary, tmp_path / "redis")
    server.start()
    yield server
    server.stop(signal.SIGKILL)


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    binary = find_binary("mosquitto")
    if binary is None:
        pytest.skip("mosquitto is not installed")
    broker = PrivateBroker(binary, tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop(signal.SIGKILL)


@pytest.fixture
def paced_line() -> Iterator[PacedLine]:
    line = PacedLine()
    yield line
    line.close()


@pytest.fixture
def durable_subscriber(private_broker: PrivateBroker) -> Iterator[DurableSubscriber]:
    sub = DurableSubscriber(
        "127.0.0.1", private_broker.port, f"{TOPIC_ROOT}/#", client_id="chaos-subscriber"
    )
    sub.start()
    yield sub
    sub.stop()


@pytest.fixture
def slots(
    tmp_path: Path, private_redis: PrivateRedis, private_broker: PrivateBroker, paced_line: PacedLine
) -> Iterator[dict[str, ServiceSlot]]:
    env = {
        "GATEWAY_REDIS_URL": private_redis.url,
        "GATEWAY_STREAM_PREFIX": PREFIX,
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_LOG_LEVEL": "info",
        # ingest
        "GATEWAY_SERIAL_PORT": paced_line.path,
        "GATEWAY_REDIS_BACKOFF_MAX_S": "0.5",
        "GATEWAY_REOPEN_BACKOFF_MAX_S": "0.5",
        # decoder
        "GATEWAY_CLAIM_IDLE_MS": str(CLAIM_IDLE_MS),
        "GATEWAY_CLAIM_INTERVAL_MS": "500",
        "GATEWAY_BLOCK_MS": "500",
        # publisher
        "GATEWAY_MQTT_HOST": "127.0.0.1",
        "GATEWAY_MQTT_PORT": str(private_broker.port),
        "GATEWAY_MQTT_TLS": "false",
        "GATEWAY_MQTT_CLIENT_ID": "chaos-gateway",
        "GATEWAY_PROJECT_ID": PROJECT_ID,
        "GATEWAY_EDGE_NODE_ID": EDGE_NODE_ID,
        "GATEWAY_TOPIC_ROOT": TOPIC_ROOT,
        "GATEWAY_WINDOW_MESSAGES": str(WINDOW),
        "GATEWAY_RECONNECT_MIN_S": "1",
        "GATEWAY_RECONNECT_MAX_S": "1",
    }
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    made = {
        name: ServiceSlot(
            name, command, {**env, "GATEWAY_CONSUMER_NAME": f"chaos-{name}"}, log_dir
        )
        for name, command in SERVICES.items()
    }
    yield made
    for slot in made.values():
        if slot.alive():
            slot.current.killed = True
            slot.current.process.kill()
            slot.current.process.wait(10)


# ----------------------------------------------------------------------------- drain


def group_state(client: redis.Redis, stream: str, group: str) -> tuple[int, int | None]:
    """(pending, lag) of a consumer group; lag None when Redis cannot tell."""
    for info in client.xinfo_groups(stream):  # type: ignore[union-attr]
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name == group:
            lag = info.get("lag")
            return int(info["pending"]), None if lag is None else int(lag)
    raise AssertionError(f"no group {group} on {stream}")


def accepted_frames(client: redis.Redis, keys: StreamKeys, seq_of: dict[bytes, int]) -> list[tuple[str, int, float]]:
    """(entry id, reading number, receive time) of every entry of `{p}:frames`."""
    out = []
    for entry_id, fields in client.xrange(keys.frames):  # type: ignore[union-attr]
        frame = decode_frame(fields[b"d"])
        seq = seq_of.get(frame.alp)
        assert seq is not None, f"an accepted frame was never sent: {frame.alp.hex()}"
        out.append((entry_id.decode(), seq, frame.received_at))
    return out


def ddata_seqs(messages: list[Any]) -> set[int]:
    return {seq for m in messages if (seq := seq_in(m.topic, m.payload)) is not None}


def seq_in(topic: str, payload: bytes) -> int | None:
    if "/DDATA/" not in topic:
        return None
    for metric in json.loads(payload)["metrics"]:
        if metric["name"] == ACTIVE_1:
            return int(metric["value"])
    raise AssertionError(f"DDATA without {ACTIVE_1}: {payload!r}")


# ----------------------------------------------------------------------------- the test


def test_faults_lose_no_accepted_frame(
    private_redis: PrivateRedis,
    private_broker: PrivateBroker,
    paced_line: PacedLine,
    durable_subscriber: DurableSubscriber,
    slots: dict[str, ServiceSlot],
) -> None:
    seed = int(os.environ.get("GATEWAY_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    frames = [frame_of(seq) for seq in range(FRAMES)]
    seq_of = {frame[7:]: seq for seq, frame in enumerate(frames)}
    flow_s = sum(map(len, frames)) / paced_line._bytes_per_s
    schedule = fault_schedule(rng, flow_s)
    print(f"\nchaos seed {seed} (GATEWAY_CHAOS_SEED={seed} replays it), {FRAMES} frames, {flow_s:.1f} s")
    for fault in schedule:
        print(f"  {fault}")
    tag = f"[seed {seed}]"

    for slot in slots.values():
        slot.start()
    slots["ingest"].wait_log("serial_opened")
    slots["publisher"].wait_log("mqtt_connected")
    for name in ("decoder-1", "decoder-2"):
        slots[name].wait_log("decoder_started")

    runner = FaultRunner(schedule, slots, private_redis, private_broker)
    started = time.monotonic()
    runner.start(started)
    sent_at = paced_line.send(frames)
    flowed = time.monotonic() - started
    runner.join(timeout_s=30)

    # ---- drain
    client = private_redis.client()
    keys = StreamKeys(PREFIX)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    last_len, stable_since = -1, time.monotonic()
    while True:
        for slot in slots.values():
            slot.check()
        frames_len = client.xlen(keys.frames)
        if frames_len != last_len:
            last_len, stable_since = frames_len, time.monotonic()
        decoder_state = group_state(client, keys.frames, DECODER_GROUP)
        publisher_state = group_state(client, keys.records, PUBLISHER_GROUP)
        accepted = accepted_frames(client, keys, seq_of)
        missing = {seq for _id, seq, _rx in accepted} - ddata_seqs(durable_subscriber.snapshot())
        drained = (
            time.monotonic() - stable_since >= STABLE_S
            and decoder_state == (0, 0)
            and publisher_state == (0, 0)
            and not missing
        )
        if drained:
            break
        if time.monotonic() > deadline:
            logs = "\n".join(s.logs() for s in slots.values())
            pytest.fail(
                f"{tag} not drained after {DRAIN_TIMEOUT_S} s: frames {frames_len}, decoder "
                f"(pending, lag) {decoder_state}, publisher {publisher_state}, "
                f"{len(missing)} readings not received (e.g. {sorted(missing)[:10]}), "
                f"subscriber sessions {durable_subscriber.connections}\n{logs}"
            )
        time.sleep(0.25)
    drained_after = time.monotonic() - started - flowed
    time.sleep(1.0)  # a late duplicate would arrive now
    messages = durable_subscriber.snapshot()
    for slot in slots.values():
        slot.check()

    # ---- no service crashed by itself; all stop cleanly
    crashes = [c for s in slots.values() for c in s.crashes]
    assert not crashes, f"{tag} services exited by themselves: {crashes}"
    exit_codes = {name: slot.stop() for name, slot in slots.items()}
    assert exit_codes == dict.fromkeys(slots, 0), f"{tag} SIGTERM exit codes {exit_codes}"
    tracebacks = [s.name for s in slots.values() if "Traceback" in s.log_text()]
    assert not tracebacks, f"{tag} tracebacks in {tracebacks}\n" + "\n".join(
        slots[n].logs() for n in tracebacks
    )

    # ---- what Redis accepted
    accepted = accepted_frames(client, keys, seq_of)
    entries_per_seq = Counter(seq for _id, seq, _rx in accepted)
    rx_of: dict[int, set[float]] = defaultdict(set)
    for _id, seq, rx in accepted:
        rx_of[seq].add(rx)
    ingest_repeats = len(accepted) - len(entries_per_seq)
    redis_restarts = sum(1 for d in runner.done if d.fault.target == "redis")
    assert ingest_repeats == 0 or redis_restarts, f"{tag} frames written twice without a Redis fault"
    assert all(len(s) == 1 for s in rx_of.values()), f"{tag} a frame accepted twice with different receive times"

    # Frames the line delivered that Redis never accepted were in a killed ingest's memory.
    delivered = {seq for seq, at in enumerate(sent_at) if at is not None}
    lost_on_line = FRAMES - len(delivered)
    not_accepted = sorted(delivered - set(entries_per_seq))
    kills = [d.down_at for d in runner.done if d.fault.target == "ingest"]
    outages = [(d.down_at, (d.up_at or d.down_at) + 2.0) for d in runner.done if d.fault.target == "redis"]

    def explained(seq: int) -> bool:
        at = sent_at[seq]
        assert at is not None
        for kill in kills:
            since = min([kill - 1.0, *(a for a, b in outages if a <= kill <= b)])
            if since <= at <= kill:
                return True
        return False

    unexplained = [seq for seq in not_accepted if not explained(seq)]
    assert not unexplained, (
        f"{tag} frames delivered to the pty, never accepted, not near an ingest kill: "
        f"{unexplained[:20]} (kills at {[round(k - started, 2) for k in kills]})"
    )

    # ---- decoder: exactly one record per accepted frame, no dead letter
    records = [decode_record(f[b"d"]) for _id, f in client.xrange(keys.records)]  # type: ignore[union-attr]
    per_frame = Counter(r.frame_id for r in records)
    frame_ids = {entry_id for entry_id, _seq, _rx in accepted}
    assert set(per_frame) == frame_ids, f"{tag} records do not match the accepted frames"
    assert max(per_frame.values()) == 1, f"{tag} frames decoded twice: {[f for f, n in per_frame.items() if n > 1][:10]}"
    assert client.xlen(keys.dead) == 0, f"{tag} dead letters: {client.xrange(keys.dead, count=5)}"

    # ---- pending back to zero (XPENDING, not the XINFO the drain used)
    for stream, group in ((keys.frames, DECODER_GROUP), (keys.records, PUBLISHER_GROUP)):
        summary: Any = client.xpending(stream, group)
        assert summary["pending"] == 0, f"{tag} {group}: {summary}"

    # ---- the subscriber: every accepted reading, right values and stamp
    copies: dict[int, list[Any]] = defaultdict(list)
    for message in messages:
        seq = seq_in(message.topic, message.payload)
        if seq is not None:
            copies[seq].append(message)
    missing = sorted(set(entries_per_seq) - set(copies))
    assert not missing, f"{tag} {len(missing)} accepted readings never published: {missing[:20]}"
    unknown = sorted(set(copies) - set(entries_per_seq))
    assert not unknown, f"{tag} readings published but never accepted: {unknown[:20]}"
    for seq, seen in copies.items():
        address = reading(seq)[0]
        (rx,) = rx_of[seq]
        stamp = round(rx * 1000)
        for message in seen:
            assert message.topic == f"{TOPIC_ROOT}/{PROJECT_ID}/DDATA/{EDGE_NODE_ID}/{device_id(address)}"
            got = json.loads(message.payload)["metrics"]
            assert [(m["name"], m["dataType"], m["value"]) for m in got] == expected_metrics(seq), seq
            assert {m["timestamp"] for m in got} == {stamp}, (seq, stamp)

    # ---- duplicates: only after a publisher kill or a broker restart, a window at most each
    repeating = sorted((d.down_at, str(d.fault)) for d in runner.done if d.fault.target in REPEATING)
    extras_by_fault: Counter[str] = Counter()
    redelivered = 0
    for seq, seen in copies.items():
        for message in sorted(seen, key=lambda m: m.at)[entries_per_seq[seq] :]:
            if message.dup:
                redelivered += 1  # the broker's redelivery to this subscriber
                continue
            before = [name for at, name in repeating if at <= message.at]
            extras_by_fault[before[-1] if before else "no fault"] += 1
    extras = sum(len(seen) for seen in copies.values()) - len(accepted)
    print(
        f"chaos seed {seed}: flow {flowed:.1f} s, drained {drained_after:.1f} s later; "
        f"{len(entries_per_seq)} readings accepted, {lost_on_line} lost on the line while no ingest "
        f"read it, {len(not_accepted)} in killed ingests' memory, {ingest_repeats} written twice by "
        f"ingest; {extras} extra copies at the subscriber ({redelivered} broker redeliveries), by "
        f"fault: {dict(extras_by_fault)}; subscriber sessions {durable_subscriber.connections}"
    )
    assert "no fault" not in extras_by_fault, f"{tag} duplicates with no publisher fault: {extras_by_fault}"
    over = {f: n for f, n in extras_by_fault.items() if n > WINDOW}
    assert not over, f"{tag} more than the window ({WINDOW}) repeated after a fault: {over}"
    assert extras <= 0.05 * len(accepted), f"{tag} {extras} duplicates for {len(accepted)} frames"
    assert len(entries_per_seq) >= 0.5 * FRAMES, f"{tag} only {len(entries_per_seq)} frames accepted"
    client.close()
