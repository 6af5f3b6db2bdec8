"""Numbered readings through the whole pipeline, and the checks, made from outside the services,
that they were delivered: for the fault scenarios (tests/test_chaos_*.py).

The readings come from tests/readings.py (reading `seq` names itself in its DDATA). A
`PacedFlow` writes them on a pty at the serial line rate from a thread of its own, so the test
can act meanwhile. `wait_drained` waits until the pipeline is still and empty; `check_delivery`
then checks the first wave's invariants: every accepted frame became exactly one record (no dead
letter), nothing is pending, every accepted reading reached the subscriber with its values and
its receive-time stamp, and nothing arrived that was never accepted. What it returns counts the
copies, for each scenario's own rule on duplicates.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway_common.entries import decode_frame, decode_record
from gateway_common.streams import DECODER_GROUP, PUBLISHER_GROUP, StreamKeys
from gateway_devkit.processes import clean_env

from .readings import alp_of, ddata_topic, expected_metrics, frame_of, ranges, seq_of_ddata
from .test_chaos import group_state

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis

    from gateway_devkit.modem_line import ModemLine
    from gateway_devkit.mqtt_watch import MqttWatch, Received
    from gateway_devkit.processes import Child, Supervisor

PROJECT_ID = "proj-chaos"
EDGE_NODE_ID = "edge-chaos"
STILL_S = 1.5
"""Drained once, for this long, ingest has read everything and the frames stream did not grow
(and both groups are empty, the subscriber has every reading)."""


def pipeline_env(
    *, redis_url: str, mqtt_port: int, line: ModemLine, prefix: str, topic_root: str, **extra: str
) -> dict[str, str]:
    """The services' environment: Redis, the broker on loopback (no TLS), the pty as the serial
    port, JSON logs; `extra` as GATEWAY_* names without the prefix (`KEEPALIVE_S="5"`)."""
    return clean_env(
        GATEWAY_REDIS_URL=redis_url,
        GATEWAY_STREAM_PREFIX=prefix,
        GATEWAY_LOG_FORMAT="json",
        GATEWAY_LOG_LEVEL=os.environ.get("GATEWAY_CHAOS_LOG_LEVEL", "info"),
        GATEWAY_SERIAL_PORT=line.path,
        GATEWAY_MQTT_HOST="127.0.0.1",
        GATEWAY_MQTT_PORT=str(mqtt_port),
        GATEWAY_MQTT_TLS="false",
        GATEWAY_MQTT_CLIENT_ID=f"{prefix}-gateway",
        GATEWAY_PROJECT_ID=PROJECT_ID,
        GATEWAY_EDGE_NODE_ID=EDGE_NODE_ID,
        GATEWAY_TOPIC_ROOT=topic_root,
        **{f"GATEWAY_{name}": value for name, value in extra.items()},
    )


@dataclass
class PacedFlow:
    """Readings 0..count-1 written on `line` at the line rate, from a thread."""

    line: ModemLine
    count: int
    sent_at: list[float | None] = field(default_factory=list)
    """Per reading, time.monotonic() once written (None: lost on a lossy line)."""
    started_at: float = 0.0
    ended_at: float | None = None
    _thread: threading.Thread | None = None

    def start(self) -> PacedFlow:
        frames = [frame_of(seq) for seq in range(self.count)]
        self.started_at = time.monotonic()

        def write() -> None:
            self.sent_at = self.line.paced(frames, clock=time.monotonic)
            self.ended_at = time.monotonic()

        self._thread = threading.Thread(target=write, name="paced-flow", daemon=True)
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        return self.ended_at is not None

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def join(self, timeout_s: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the flow of frames did not end in time"

    def delivered(self) -> set[int]:
        """The readings the line delivered (all of them unless lossy and nobody read)."""
        return {seq for seq, at in enumerate(self.sent_at) if at is not None}


def seq_of_alp(count: int) -> dict[bytes, int]:
    return {alp_of(seq): seq for seq in range(count)}


@dataclass(frozen=True)
class Accepted:
    entry_id: str
    seq: int
    received_at: float


def accepted_frames(
    client: redis.Redis, keys: StreamKeys, seq_of: dict[bytes, int]
) -> list[Accepted]:
    """Every entry of `{p}:frames`, as the reading it carries."""
    out = []
    entries: Any = client.xrange(keys.frames)
    for entry_id, fields in entries:
        frame = decode_frame(fields[b"d"])
        seq = seq_of.get(frame.alp)
        assert seq is not None, f"an accepted frame was never sent: {frame.alp.hex()}"
        out.append(Accepted(entry_id.decode(), seq, frame.received_at))
    return out


def seq_in(message: Received) -> int | None:
    return seq_of_ddata(message.topic, message.payload)


def wait_drained(
    client: redis.Redis,
    keys: StreamKeys,
    line: ModemLine,
    watch: MqttWatch,
    seq_of: dict[bytes, int],
    *,
    timeout_s: float,
    tag: str,
    logs: Callable[[], str],
    accept_all: int | None = None,
) -> float:
    """Wait until everything the line delivered is through; the seconds it took.

    `accept_all`: the number of readings sent, when every one must be accepted (no fault of
    the scenario may lose one): the drain also waits for the frames ingest still holds."""
    started = time.monotonic()
    deadline = started + timeout_s
    last_len, still_since = -1, started
    while True:
        frames_len = client.xlen(keys.frames)
        unread = line.unread()
        if frames_len != last_len or unread:
            last_len, still_since = frames_len, time.monotonic()
        decoder = group_state(client, keys.frames, DECODER_GROUP)
        publisher = group_state(client, keys.records, PUBLISHER_GROUP)
        received = {seq_in(m) for m in watch.snapshot()}
        accepted = {a.seq for a in accepted_frames(client, keys, seq_of)}
        missing = accepted - received
        if (
            (accept_all is None or len(accepted) == accept_all)
            and time.monotonic() - still_since >= STILL_S
            and decoder == (0, 0)
            and publisher == (0, 0)
            and not missing
        ):
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{tag} not drained after {timeout_s} s: {unread} bytes unread on the line, "
                f"{frames_len} frames ({len(accepted)} readings), (pending, lag) decoder "
                f"{decoder}, publisher {publisher}, "
                f"{len(missing)} accepted readings not received ({ranges(missing)})\n{logs()}"
            )
        time.sleep(0.25)


@dataclass
class Delivery:
    """What reached Redis and the subscriber."""

    accepted: list[Accepted]
    entries_per_seq: Counter[int]
    """Accepted entries per reading: 2 when ingest wrote a batch twice."""
    copies: dict[int, list[Received]]
    """Per reading, every DDATA the subscriber got."""

    @property
    def ingest_repeats(self) -> int:
        return len(self.accepted) - len(self.entries_per_seq)

    @property
    def extras(self) -> int:
        """Copies at the subscriber beyond one per accepted entry: the publisher's repeats."""
        return sum(len(seen) for seen in self.copies.values()) - len(self.accepted)


def check_delivery(
    client: redis.Redis,
    keys: StreamKeys,
    messages: list[Received],
    seq_of: dict[bytes, int],
    *,
    topic_root: str,
    tag: str,
) -> Delivery:
    """The first wave's invariants, checked on Redis and on what the subscriber received."""
    accepted = accepted_frames(client, keys, seq_of)
    entries_per_seq = Counter(a.seq for a in accepted)
    stamps: dict[int, set[float]] = defaultdict(set)
    for a in accepted:
        stamps[a.seq].add(a.received_at)
    assert all(len(s) == 1 for s in stamps.values()), (
        f"{tag} one frame accepted with two receive times"
    )

    # decoder: exactly one record per accepted frame, no dead letter
    entries: Any = client.xrange(keys.records)
    per_frame = Counter(decode_record(fields[b"d"]).frame_id for _id, fields in entries)
    twice = [frame_id for frame_id, n in per_frame.items() if n > 1]
    assert not twice, f"{tag} frames that became two records: {twice[:10]}"
    assert set(per_frame) == {a.entry_id for a in accepted}, f"{tag} records != accepted frames"
    assert client.xlen(keys.dead) == 0, f"{tag} dead letters: {client.xrange(keys.dead, count=5)}"

    # nothing pending (XPENDING, not the XINFO the drain used)
    for stream, group in ((keys.frames, DECODER_GROUP), (keys.records, PUBLISHER_GROUP)):
        summary: Any = client.xpending(stream, group)
        assert summary["pending"] == 0, f"{tag} {group}: {summary}"

    # publisher: every accepted reading reached the subscriber, with its values and stamp
    copies: dict[int, list[Received]] = defaultdict(list)
    for message in messages:
        if (seq := seq_in(message)) is not None:
            copies[seq].append(message)
    missing = set(entries_per_seq) - set(copies)
    assert not missing, f"{tag} accepted readings never received: {ranges(missing)}"
    unknown = set(copies) - set(entries_per_seq)
    assert not unknown, f"{tag} readings received but never accepted: {ranges(unknown)}"
    for seq, seen in copies.items():
        (received_at,) = stamps[seq]
        topic = ddata_topic(topic_root, PROJECT_ID, EDGE_NODE_ID, seq)
        for message in seen:
            assert message.topic == topic, (tag, seq)
            got = json.loads(message.payload)["metrics"]
            assert [(m["name"], m["dataType"], m["value"]) for m in got] == expected_metrics(seq)
            assert {m["timestamp"] for m in got} == {round(received_at * 1000)}, (tag, seq)
    return Delivery(accepted, entries_per_seq, dict(copies))


def check_clean_exit(services: Supervisor, names: list[str], tag: str) -> None:
    """No service exited by itself, each stops with 0 on SIGTERM, none logged a traceback."""
    crashes = services.crashes()
    assert not crashes, f"{tag} services exited by themselves: {crashes}\n{services.logs()}"
    codes = {name: services.stop(name) for name in names}
    assert codes == dict.fromkeys(names, 0), f"{tag} exit codes on SIGTERM: {codes}"
    tracebacks = [n for n in names if any("Traceback" in c.log() for c in services.incarnations(n))]
    assert not tracebacks, f"{tag} tracebacks in {tracebacks}\n{services.logs()}"


@dataclass(frozen=True)
class LogEvent:
    event: str
    at: float
    """Wall-clock time (time.time()) of the log line."""
    fields: dict[str, Any]


def log_events(child: Child, event: str) -> list[LogEvent]:
    """Every JSON log line of `event` in a child's log, in order."""
    found = []
    for line in child.log().splitlines():
        if f'"event": "{event}"' not in line:
            continue
        with contextlib.suppress(ValueError, KeyError):
            fields = json.loads(line)
            at = datetime.fromisoformat(fields["timestamp"]).timestamp()
            found.append(LogEvent(event, at, fields))
    return found
