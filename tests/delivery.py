"""Numbered readings through the whole pipeline, and the checks, made from outside the services,
that they were delivered: the scaffolding the fault scenarios (tests/test_chaos*.py, and what
fits of tests/test_soak.py) share. Each scenario keeps its own rules (loss windows, duplicate
allowances, what "survived" means) in its own module.

The readings come from tests/readings.py (reading `seq` names itself in its DDATA). A
`PacedFlow` writes them on a pty at the serial line rate from a thread of its own, so the test
can act meanwhile. `wait_drained` waits until the pipeline is still and empty; `check_delivery`
then checks the first wave's invariants: every accepted frame became exactly one record (no dead
letter), nothing is pending, every accepted reading reached the subscriber with its topic, its
values and its receive-time stamp, and nothing arrived that was never accepted. `read_delivery`
counts the copies, for each scenario's own rule on duplicates. `check_clean_exit` ends a test:
no service exited by itself, each stops with 0 on SIGTERM, none logged a traceback.
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
from gateway_common.group_info import read_group
from gateway_common.streams import DECODER_GROUP, PUBLISHER_GROUP, StreamKeys
from gateway_devkit.modem_line import LINE_BYTES_PER_S
from gateway_devkit.processes import clean_env
from gateway_devkit.servers import free_port

from .readings import alp_of, ddata_topic, expected_metrics, frame_of, ranges, seq_of_ddata

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

    import redis

    from gateway_devkit.modem_line import ModemLine
    from gateway_devkit.mqtt_watch import MqttWatch, Received
    from gateway_devkit.processes import Child, Supervisor
    from gateway_devkit.servers import PrivateBroker

PROJECT_ID = "proj-chaos"
EDGE_NODE_ID = "edge-chaos"
STILL_S = 1.5
"""Drained once, for this long, ingest has read everything and the frames stream did not grow
(and both groups are empty, the subscriber has every reading)."""
FRAME_BYTES = len(frame_of(0))
"""Every numbered reading's frame has this length."""
FRAMES_PER_S = LINE_BYTES_PER_S / FRAME_BYTES
"""Frames per second at 115200 baud (~113)."""
PIPELINE = {
    "ingest": "gateway-ingest",
    "decoder": "gateway-decoder",
    "publisher": "gateway-publisher",
}
"""One of each service: the service name -> its command."""
TWO_DECODERS = {
    "ingest": "gateway-ingest",
    "decoder-1": "gateway-decoder",
    "decoder-2": "gateway-decoder",
    "publisher": "gateway-publisher",
}
"""The pipeline with two decoder replicas."""
READY = {
    "gateway-ingest": "serial_opened",
    "gateway-decoder": "decoder_started",
    "gateway-publisher": "mqtt_connected",
}
"""The log event by which each command says it is ready to carry readings."""
WINDOW = 16
"""GATEWAY_WINDOW_MESSAGES the scenarios give the publisher: the most a kill or a lost
connection may make it publish again."""
QUICK_RECOVERY = {
    # ingest
    "REDIS_BACKOFF_MAX_S": "0.5",
    "REOPEN_BACKOFF_MAX_S": "0.5",
    # decoder: a killed replica's frames claimed after 2 s
    "CLAIM_IDLE_MS": "2000",
    "CLAIM_INTERVAL_MS": "500",
    "BLOCK_MS": "500",
    # publisher
    "WINDOW_MESSAGES": str(WINDOW),
    "RECONNECT_MIN_S": "1",
    "RECONNECT_MAX_S": "1",
}
"""pipeline_env's extra for scenarios that kill services and servers: short backoffs, so the
pipeline is back within a second or two of each fault."""


# ----------------------------------------------------------------------------- the pipeline


def pipeline_env(
    *,
    redis_url: str,
    mqtt_port: int,
    line: ModemLine | None,
    prefix: str,
    topic_root: str,
    **extra: str,
) -> dict[str, str]:
    """The services' environment: Redis, the broker on loopback (no TLS), the pty as the serial
    port (`line` None: given to ingest when it starts), JSON logs; `extra` as GATEWAY_* names
    without the prefix (`KEEPALIVE_S="5"`)."""
    serial = {} if line is None else {"GATEWAY_SERIAL_PORT": line.path}
    return clean_env(
        GATEWAY_REDIS_URL=redis_url,
        GATEWAY_STREAM_PREFIX=prefix,
        GATEWAY_LOG_FORMAT="json",
        GATEWAY_LOG_LEVEL=os.environ.get("GATEWAY_CHAOS_LOG_LEVEL", "info"),
        GATEWAY_MQTT_HOST="127.0.0.1",
        GATEWAY_MQTT_PORT=str(mqtt_port),
        GATEWAY_MQTT_TLS="false",
        GATEWAY_MQTT_CLIENT_ID=f"{prefix}-gateway",
        GATEWAY_PROJECT_ID=PROJECT_ID,
        GATEWAY_EDGE_NODE_ID=EDGE_NODE_ID,
        GATEWAY_TOPIC_ROOT=topic_root,
        **serial,
        **{f"GATEWAY_{name}": value for name, value in extra.items()},
    )


def wait_ready(services: Supervisor, names: Mapping[str, str]) -> None:
    """Wait until each service (name -> command) logged that it is ready (READY)."""
    for name, command in names.items():
        services.wait_log(name, READY[command])


def start_pipeline(
    services: Supervisor, ports: Mapping[str, int], *, consumer_prefix: str, **extra: str
) -> None:
    """Start PIPELINE (consumer names `{consumer_prefix}{name}`, metrics on `ports`, `extra`:
    more variables for each, full names as Supervisor.start_service takes them) and wait until
    every service is ready."""
    for name, command in PIPELINE.items():
        services.start_service(
            name,
            command,
            GATEWAY_CONSUMER_NAME=f"{consumer_prefix}{name}",
            GATEWAY_METRICS_PORT=str(ports[name]),
            **extra,
        )
    wait_ready(services, PIPELINE)


def pipeline_ports() -> dict[str, int]:
    """A free loopback port per service of PIPELINE, for its metrics."""
    return {name: free_port() for name in PIPELINE}


def health_record(services: Supervisor, name: str) -> dict[str, Any] | None:
    """The service's health file (ok, reason, beat_at, ...); None while there is none, or it is
    being replaced."""
    path = services.log_dir / f"{name}-health.json"
    try:
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record


def watch_readings(
    subscriber: Callable[..., MqttWatch],
    broker: PrivateBroker,
    topic_root: str,
    *,
    durable: bool = False,
) -> MqttWatch:
    """An MQTT subscriber to everything under `topic_root`; `durable`: a persistent session (one
    hour, client id `{topic_root}-subscriber`): across a broker restart it gets what was
    queued."""
    if not durable:
        return subscriber("127.0.0.1", broker.port, f"{topic_root}/#")
    return subscriber(
        "127.0.0.1",
        broker.port,
        f"{topic_root}/#",
        session_expiry_s=3600,
        client_id=f"{topic_root}-subscriber",
    )


# ----------------------------------------------------------------------------- the readings


def line_seconds(count: int) -> float:
    """How long readings 0..count-1 take on the line."""
    return count * FRAME_BYTES / LINE_BYTES_PER_S


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

    def flowed_s(self) -> float:
        """How long the flow took (once joined)."""
        assert self.ended_at is not None, "the flow has not ended"
        return self.ended_at - self.started_at

    def join(self, timeout_s: float, tag: str = "") -> None:
        assert self._thread is not None
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"{tag} the flow of frames did not end in time".strip()

    def delivered(self) -> set[int]:
        """The readings the line delivered (all of them unless lossy and nobody read)."""
        return {seq for seq, at in enumerate(self.sent_at) if at is not None}

    def sent_in(self, seqs: set[int], windows: list[tuple[float, float]]) -> set[int]:
        """Those of `seqs` the line delivered within one of `windows` (time.monotonic())."""
        return {seq for seq in seqs if any(a <= (self.sent_at[seq] or 0) <= b for a, b in windows)}


class InBackground:
    """What a test does in a thread of its own while the frames flow (a schedule of faults): a
    dataclass subclass gives `run(t0)` (t0: when the flow started, time.monotonic()), which
    waits with `until()` and returns once it says the test gave up. `join()`, in the test's
    thread, fails if the run did not end in time or raised (`LATE`, `FAILED`)."""

    NAME = "background"
    LATE = "the schedule did not finish in time"
    FAILED = "a step of the schedule failed"

    def __post_init__(self) -> None:
        self.error: BaseException | None = None
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self, t0: float) -> None:
        raise NotImplementedError

    def start(self, t0: float) -> None:
        self._thread = threading.Thread(target=self._guarded, args=(t0,), name=self.NAME)
        self._thread.daemon = True
        self._thread.start()

    def join(self, timeout_s: float, *, abort_s: float = 10.0) -> None:
        """Wait `timeout_s` for the run to end; else tell it to give up, wait `abort_s` more for
        it to do so (what it was doing ends first), and fail."""
        assert self._thread is not None
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(abort_s)
            raise AssertionError(self.LATE)
        if self.error is not None:
            raise AssertionError(f"{self.FAILED}: {self.error!r}") from self.error

    def until(self, at: float) -> bool:
        """Wait until time.monotonic() is `at`; True if the test gave up meanwhile."""
        return self._abort.wait(max(0.0, at - time.monotonic()))

    def _guarded(self, t0: float) -> None:
        try:
            self.run(t0)
        except BaseException as exc:  # reported by join() in the test's thread
            self.error = exc


def seq_of_alp(count: int) -> dict[bytes, int]:
    return {alp_of(seq): seq for seq in range(count)}


@dataclass(frozen=True)
class Accepted:
    entry_id: str
    seq: int
    received_at: float


def accepted_frames(
    client: redis.Redis, keys: StreamKeys, seq_of: dict[bytes, int], tag: str = ""
) -> list[Accepted]:
    """Every entry of `{p}:frames`, as the reading it carries."""
    out = []
    entries: Any = client.xrange(keys.frames)
    for entry_id, fields in entries:
        frame = decode_frame(fields[b"d"])
        seq = seq_of.get(frame.alp)
        assert seq is not None, f"{tag} an accepted frame was never sent: {frame.alp.hex()}"
        out.append(Accepted(entry_id.decode(), seq, frame.received_at))
    return out


def seq_in(message: Received) -> int | None:
    return seq_of_ddata(message.topic, message.payload)


def group_state(client: redis.Redis, stream: str, group: str) -> tuple[int, int | None]:
    """(pending, lag) of a consumer group, lag as the services read it (group_info: 0 once the
    group was delivered the stream's last entry, whatever Redis 7.0's counter says after
    reloading a rewritten AOF; docs/reliability.md, 3)."""
    info = read_group(client, stream, group)
    assert info is not None, f"no group {group} on {stream}"
    return info.pending, info.lag


# ----------------------------------------------------------------------------- the drain


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
    busy: Callable[[], bool] | None = None,
) -> float:
    """Wait until everything the line delivered is through; the seconds it took.

    `accept_all`: the number of readings sent, when every one must be accepted (no fault of
    the scenario may lose one): the drain also waits for the frames ingest still holds.
    `busy`: True while the drain cannot be still yet (ingest not running, or holding frames),
    whatever the frames stream says. `logs`: the end of the failure message."""
    started = time.monotonic()
    deadline = started + timeout_s
    last_len, still_since = -1, started
    while True:
        frames_len = client.xlen(keys.frames)
        unread = line.unread()
        if frames_len != last_len or unread or (busy is not None and busy()):
            last_len, still_since = frames_len, time.monotonic()
        decoder = group_state(client, keys.frames, DECODER_GROUP)
        publisher = group_state(client, keys.records, PUBLISHER_GROUP)
        received = {seq_in(m) for m in watch.snapshot()}
        accepted = {a.seq for a in accepted_frames(client, keys, seq_of, tag)}
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


# ----------------------------------------------------------------------------- the checks


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

    def repeats(self) -> tuple[list[Received], int]:
        """The copies of each reading, in arrival order, beyond as many as it has accepted
        entries (beyond the first, for a reading no longer in Redis), without the broker's
        redeliveries to this subscriber (DUP flag); and how many redeliveries there were."""
        repeated, redelivered = [], 0
        for seq, seen in self.copies.items():
            first = max(1, self.entries_per_seq[seq])
            for message in sorted(seen, key=lambda m: m.monotonic)[first:]:
                if message.dup:
                    redelivered += 1
                else:
                    repeated.append(message)
        return repeated, redelivered


def copies_by_seq(messages: list[Received]) -> dict[int, list[Received]]:
    """Per reading, every DDATA of it among `messages`, in order."""
    copies: dict[int, list[Received]] = defaultdict(list)
    for message in messages:
        if (seq := seq_in(message)) is not None:
            copies[seq].append(message)
    return dict(copies)


def read_delivery(
    client: redis.Redis,
    keys: StreamKeys,
    messages: list[Received],
    seq_of: dict[bytes, int],
    tag: str = "",
) -> Delivery:
    """What the frames stream holds and the subscriber got (no check but that every accepted
    frame was sent)."""
    accepted = accepted_frames(client, keys, seq_of, tag)
    return Delivery(accepted, Counter(a.seq for a in accepted), copies_by_seq(messages))


def check_delivery(
    client: redis.Redis,
    keys: StreamKeys,
    delivery: Delivery,
    *,
    topic_root: str,
    tag: str,
    gone: Collection[int] = (),
) -> None:
    """The first wave's invariants, checked on Redis and on what the subscriber received.

    `gone`: readings whose frames the scenario lost after the subscriber got them (a truncated
    AOF): they may have been received without being in the frames stream any more."""
    stamps: dict[int, set[float]] = defaultdict(set)
    for a in delivery.accepted:
        stamps[a.seq].add(a.received_at)
    assert all(len(s) == 1 for s in stamps.values()), (
        f"{tag} one frame accepted with two receive times"
    )

    # decoder: exactly one record per accepted frame, no dead letter
    entries: Any = client.xrange(keys.records)
    per_frame = Counter(decode_record(fields[b"d"]).frame_id for _id, fields in entries)
    twice = [frame_id for frame_id, n in per_frame.items() if n > 1]
    assert not twice, f"{tag} frames that became two records: {twice[:10]}"
    frame_ids = {a.entry_id for a in delivery.accepted}
    assert set(per_frame) == frame_ids, (
        f"{tag} records != accepted frames: {len(set(per_frame) - frame_ids)} records of no "
        f"accepted frame, {len(frame_ids - set(per_frame))} accepted frames without a record"
    )
    assert client.xlen(keys.dead) == 0, f"{tag} dead letters: {client.xrange(keys.dead, count=5)}"

    # nothing pending (XPENDING, not the XINFO the drain used)
    for stream, group in ((keys.frames, DECODER_GROUP), (keys.records, PUBLISHER_GROUP)):
        summary: Any = client.xpending(stream, group)
        assert summary["pending"] == 0, f"{tag} {group}: {summary}"

    # publisher: every accepted reading reached the subscriber, with its values and stamp
    copies = delivery.copies
    missing = set(stamps) - set(copies)
    assert not missing, f"{tag} accepted readings never received: {ranges(missing)}"
    unknown = set(copies) - set(stamps) - set(gone)
    assert not unknown, f"{tag} readings received but never accepted: {ranges(unknown)}"
    for seq, seen in copies.items():
        topic = ddata_topic(topic_root, PROJECT_ID, EDGE_NODE_ID, seq)
        for message in seen:
            assert message.topic == topic, (tag, seq)
            got = json.loads(message.payload)["metrics"]
            values = [(m["name"], m["dataType"], m["value"]) for m in got]
            assert values == expected_metrics(seq), (tag, seq, values)
            if seq in stamps:  # else gone: its stamp went with its frame
                (received_at,) = stamps[seq]
                assert {m["timestamp"] for m in got} == {round(received_at * 1000)}, (tag, seq)


def check_clean_exit(services: Supervisor, names: list[str], tag: str) -> None:
    """No service exited by itself, each of `names` stops with 0 on SIGTERM, and no process the
    supervisor ever started (every incarnation) logged a traceback."""
    crashes = services.crashes()
    assert not crashes, f"{tag} services exited by themselves: {crashes}\n{services.logs()}"
    codes = {name: services.stop(name) for name in names}
    assert codes == dict.fromkeys(names, 0), f"{tag} exit codes on SIGTERM: {codes}"
    tracebacks = [c.log_path.name for c in services.children if "Traceback" in c.log()]
    assert not tracebacks, f"{tag} tracebacks in {tracebacks}\n{services.logs()}"


# ----------------------------------------------------------------------------- the logs


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
