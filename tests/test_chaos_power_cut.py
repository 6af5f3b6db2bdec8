"""Power cuts: Redis and every service killed at the same moment, the AOF possibly torn.

Frames flow at the serial line rate through ingest, two decoders and the publisher, on a private
Redis with `appendfsync always` and `aof-load-truncated yes` (as docker-compose.yml runs it) and
a private Mosquitto. A seeded schedule of power cuts SIGKILLs Redis and all four services within
the same instant, then starts Redis and the services again. Two kinds of cut:

- **plain**: the AOF is left as the kill left it. Every write Redis acknowledged must be there
  after the restart. Two observers say what was acknowledged, independently of Redis's state
  after the restart: a test client that XADDs to a marker stream of its own all the time,
  interleaved with the services' writes, and records the id of every XADD Redis answered; and
  ingest itself, whose `frames_written` log line (debug) follows each MULTI/EXEC Redis answered:
  the frames its incarnation got acknowledged must all be in the stream, and at most one batch
  more (executed, its reply lost with the kill).
- **truncated**: before Redis starts, the last incr file of the AOF is cut at a random byte
  offset in its last 64 KiB (a write torn by the power loss, or a storage cache that lost the
  tail). The test first loads an untouched copy in a scratch Redis (the state at the cut: the
  observers' checks hold there), parses the file's RESP commands and replays the ones Redis keeps
  from a file cut there (`gateway_devkit.aof`: complete commands, a MULTI/EXEC block only whole),
  and requires that the restarted Redis holds exactly those stream entries: the frames lost are
  exactly the XADDs behind the cut.

After the last cut the pipeline drains, and the test checks the first wave's invariants on what
survived: each surviving frame has exactly one record, every surviving reading reached the MQTT
subscriber, duplicates only as documented (the publisher's window per cut, plus, after a
truncation, the readings whose publisher acknowledgement was behind the cut), a reading the
subscriber got and Redis no longer has is one whose frame was behind a cut, frames the line
delivered and Redis never accepted were in the killed ingest's hands, nothing pending, no dead
letter, no traceback, and every service stops cleanly on SIGTERM.

What a SIGKILL cannot show: the kernel's page cache survives it, so a plain cut proves that
Redis wrote every acknowledged command to the kernel before replying. `strace` shows the rest
that software can: with `appendfsync always` every XADD reply leaves Redis after an fdatasync of
the AOF returned (with `everysec`, the same check finds replies ahead of the fsync). Whether the
storage keeps what it acknowledged to fdatasync, no test here can tell (docs/reliability.md,
"3. Power cut").

GATEWAY_CHAOS_SEED replays a schedule; GATEWAY_CHAOS_SCALE=full runs three cuts of each kind
over 6,000 frames instead of one of each over 1,500.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway_common.streams import PUBLISHER_GROUP, StreamKeys
from gateway_devkit import aof
from gateway_devkit.modem_line import ModemLine
from gateway_devkit.polling import wait_until
from gateway_devkit.processes import Supervisor, clean_env
from gateway_devkit.servers import PrivateBroker, PrivateRedis

from .delivery import (
    QUICK_RECOVERY,
    TWO_DECODERS,
    WINDOW,
    InBackground,
    PacedFlow,
    accepted_frames,
    check_clean_exit,
    check_delivery,
    line_seconds,
    pipeline_env,
    read_delivery,
    seq_of_alp,
    wait_drained,
    wait_ready,
    watch_readings,
)
from .readings import frame_of, ranges
from .seeds import choose_seed, scaled

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway_devkit.mqtt_watch import MqttWatch


pytestmark = [pytest.mark.integration, pytest.mark.system, pytest.mark.chaos]

FRAMES = scaled(1500, 6000)
CUTS = scaled(1, 3)
"""Cuts of each kind."""
BATCH_FRAMES = 100
"""GATEWAY_WRITE_BATCH_FRAMES: frames of one MULTI/EXEC of ingest."""
TAIL_BYTES = 64 * 1024
"""A truncation cuts the AOF at a random offset in its last TAIL_BYTES (about the last second
of the flow: each frame costs some 800 bytes of AOF across the pipeline)."""
DOWN_S = (0.3, 1.2)
UP_AT_LEAST_S = 3.0
"""A cut comes at least this long after the services were started again."""
DRAIN_TIMEOUT_S = 45.0
PREFIX = "powercut"
TOPIC_ROOT = "powercut"
REDIS_ARGS = ("--aof-load-truncated", "yes")
SERVICES = TWO_DECODERS
KEYS = StreamKeys(PREFIX)
FRAMES_KEY = KEYS.frames.encode()
MARKER_KEY = f"{PREFIX}:marker"


# ----------------------------------------------------------------------------- the AOF model


def stream_id_text(entry_id: aof.StreamId) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def ids_in(client: redis.Redis, key: str) -> list[aof.StreamId]:
    entries: Any = client.xrange(key)
    return [aof.parse_id(entry_id) for entry_id, _fields in entries]


def load_copy(scratch: PrivateRedis, aof_dir: Path, empty: str | None = None) -> PrivateRedis:
    """`scratch` started on a copy of `aof_dir`, with its file `empty` emptied (it answers PING
    once it has loaded it)."""
    scratch.stop(signal.SIGKILL)
    shutil.rmtree(scratch.aof_dir, ignore_errors=True)
    shutil.copytree(aof_dir, scratch.aof_dir)
    if empty is not None:
        os.truncate(scratch.aof_dir / empty, 0)
    scratch.start()
    return scratch


def test_truncated_aof_loads_as_modelled(
    private_redis: Callable[..., PrivateRedis], tmp_path: Path
) -> None:
    """The model of what Redis keeps from a cut AOF is Redis's own behaviour: XADDs alone, in a
    MULTI/EXEC (ingest's batches), in a Lua script (the decoder's hand-off), trims and deletes,
    cut before, inside and after each command, loaded by a real redis-server."""
    writer = private_redis("always", extra_args=REDIS_ARGS)
    client = writer.client()
    key, other = "m:frames", "m:other"
    for n in range(3):
        client.xadd(key, {"d": f"alone {n}"})
    with client.pipeline(transaction=True) as pipe:
        for n in range(3):
            pipe.xadd(key, {"d": f"batch {n}"})
        pipe.hset("m:state", "counter", n)
        pipe.execute()
    script = (
        "redis.call('XADD', KEYS[1], '*', 'd', 'a');"
        " return redis.call('XADD', KEYS[2], '*', 'd', 'b')"
    )
    client.eval(script, 2, key, other)
    client.eval(script, 2, other, key)
    first: Any = client.xrange(key, count=2)
    client.xdel(key, first[1][0])
    client.xtrim(key, minid=first[0][0] + b"1", approximate=False)  # keeps nothing below it
    client.xadd(key, {"d": "last"})
    client.close()
    writer.stop()
    manifest = aof.Manifest.read(writer.aof_dir)
    data = manifest.last_incr.read_bytes()
    parsed = list(aof.commands(data))
    assert parsed[-1].end == len(data), "the whole file parses"
    names = [c.name for c in parsed]
    assert names.count(b"MULTI") == 3, names  # the pipeline and both scripts

    # every command boundary, one byte either side, and the middle of each command
    cuts = {0, len(data)}
    for command in parsed:
        cuts |= {
            command.start,
            command.start + 1,
            command.end - 1,
            (command.start + command.end) // 2,
        }
    scratch = private_redis("always", start=False, extra_args=REDIS_ARGS)
    for cut in sorted(cuts):
        shutil.rmtree(scratch.aof_dir, ignore_errors=True)
        shutil.copytree(writer.aof_dir, scratch.aof_dir)
        os.truncate(scratch.aof_dir / manifest.incr[-1], cut)
        scratch.start()
        reader = scratch.client()
        kept = aof.loaded(parsed, cut)
        assert ids_in(reader, key) == aof.stream_ids(kept, key.encode()), f"cut at {cut}"
        assert ids_in(reader, other) == aof.stream_ids(kept, other.encode()), f"cut at {cut}"
        reader.close()
        scratch.stop(signal.SIGKILL)
    assert aof.stream_ids(aof.loaded(parsed), key.encode()), "not a vacuous comparison"


def test_writes_after_a_torn_transaction_survive_the_next_restart(
    private_redis: Callable[..., PrivateRedis], modem_line: ModemLine, tmp_path: Path
) -> None:
    """A cut that tears the AOF inside a MULTI/EXEC block: Redis loads it without the block but
    leaves the block's MULTI in the file, and what it appends behind it is lost at the next
    load (Redis 7.0-7.2). ingest has Redis rewrite its AOF after it started, so that the frames
    it writes then survive a second cut."""
    server = private_redis("always", extra_args=REDIS_ARGS)
    client = server.client()
    with client.pipeline(transaction=True) as pipe:  # an ingest batch, torn by the first cut
        for seq in range(3):
            pipe.xadd(KEYS.frames, {"d": f"torn {seq}"})
        pipe.execute()
    client.close()
    server.stop(signal.SIGKILL)
    last = aof.Manifest.read(server.aof_dir).last_incr
    parsed = list(aof.commands(last.read_bytes()))
    multi = max(n for n, command in enumerate(parsed) if command.name == b"MULTI")
    torn = parsed[multi + 2]  # the second XADD of the block, cut in its middle
    os.truncate(last, (torn.start + torn.end) // 2)
    server.start()
    assert server.client().xlen(KEYS.frames) == 0, "the torn block is not applied"

    supervisor = Supervisor(
        tmp_path,
        clean_env(
            GATEWAY_REDIS_URL=server.url,
            GATEWAY_STREAM_PREFIX=PREFIX,
            GATEWAY_LOG_FORMAT="json",
            GATEWAY_LOG_LEVEL="debug",
            GATEWAY_SERIAL_PORT=modem_line.path,
        ),
    )
    try:
        supervisor.start_service("ingest", "gateway-ingest")
        supervisor.wait_log("ingest", "serial_opened")
        modem_line.write(b"".join(frame_of(seq) for seq in range(20)))
        ingest = supervisor.current("ingest")
        assert wait_until(lambda: acknowledged_to(ingest.log()) == 20, 15), ingest.tail()

        def rewritten() -> bool:
            info: Any = server.client().info("persistence")
            return bool(info["aof_rewrites"]) and not info["aof_rewrite_in_progress"]

        wait_until(rewritten, 10)  # the fix's rewrite, when there is one
        # the second cut
        ingest.stopped = True
        os.kill(ingest.pid, signal.SIGKILL)
        server.stop(signal.SIGKILL)
        supervisor.stop(ingest, signal.SIGKILL)
        server.start()
        entries: Any = server.client().xrange(KEYS.frames)
        torn_back = sum(fields[b"d"].startswith(b"torn") for _id, fields in entries)
        frames = len(entries) - torn_back
        assert (torn_back, frames) == (0, 20), (
            f"after the second restart: {torn_back} entries of the torn transaction came back, "
            f"{frames} of the 20 acknowledged frames are there"
        )
        assert "aof_rewrite_requested" in ingest.log()
    finally:
        supervisor.stop_all(signal.SIGKILL)


# ----------------------------------------------------------------------------- fsync first


REPLY_WITH_ID = re.compile(r'^write\((\d+), ".*\$\d+\\r\\n\d+-\d+\\r\\n')
"""A reply carrying a stream id (XADD's, or EXEC's of a batch of XADDs), as strace shows it."""


def unsynced_replies(trace: str, aof_fd: int) -> tuple[int, int]:
    """(XADD replies, those written while the AOF had writes not yet fdatasync'ed) in an
    `strace -f` trace of redis-server. An fdatasync counts once it has returned."""
    dirty, replies, unsynced = False, 0, 0
    for line in trace.splitlines():
        call = line.split(None, 1)[1] if " " in line else line
        if call.startswith(f"write({aof_fd},"):
            dirty = True
        elif call.startswith((f"fdatasync({aof_fd})", "<... fdatasync resumed>")) and (
            call.rstrip().endswith("= 0")
        ):
            dirty = False
        elif (reply := REPLY_WITH_ID.match(call)) and int(reply[1]) != aof_fd:
            replies += 1
            unsynced += dirty
    return replies, unsynced


def aof_fd_of(pid: int) -> int:
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        if ".incr.aof" in str(fd.readlink()):
            return int(fd.name)
    raise AssertionError(f"redis-server {pid} has no incr AOF open")


@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
def test_redis_fsyncs_before_it_acknowledges(
    appendfsync: str, private_redis: Callable[..., PrivateRedis], tmp_path: Path
) -> None:
    """What a SIGKILL cannot show: that the AOF reached the disk before Redis answered. strace
    sees it: with `always`, every XADD reply (alone, and ingest's MULTI/EXEC batches) is written
    after an fdatasync of the AOF returned; with `everysec` replies overtake the fsync (the
    check can fail, and that is the price of everysec)."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    server = private_redis(appendfsync, extra_args=REDIS_ARGS)
    client = server.client()
    client.xadd("f:frames", {"d": "first"})  # the AOF is open from here on
    aof_fd = aof_fd_of(server.pid)
    trace = tmp_path / "redis.trace"
    with (tmp_path / "strace.err").open("wb") as err:
        tracer = subprocess.Popen(
            [strace, "-f", "-s", "512", "-p", str(server.pid), "-e", "trace=write,fdatasync,fsync",
             "-o", str(trace)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )  # fmt: skip
    try:
        assert wait_until(lambda: "attached" in (tmp_path / "strace.err").read_text(), 10)
        for n in range(150):
            client.xadd("f:frames", {"d": f"alone {n}"})
            with client.pipeline(transaction=True) as pipe:
                for m in range(5):
                    pipe.xadd("f:frames", {"d": f"batch {n} {m}"})
                pipe.hset("f:state", "counter", n)
                pipe.execute()
    finally:
        client.close()
        tracer.send_signal(signal.SIGINT)  # detaches, writes the rest of the trace
        tracer.wait(10)
    replies, unsynced = unsynced_replies(trace.read_text(encoding="utf-8"), aof_fd)
    print(f"\nappendfsync {appendfsync}: {unsynced} of {replies} XADD replies before fdatasync")
    assert replies >= 150 * 2, f"only {replies} XADD replies seen in the trace"
    if appendfsync == "always":
        assert unsynced == 0, f"{unsynced} of {replies} replies before the AOF's fdatasync"
    else:
        assert unsynced > replies // 2, f"everysec: only {unsynced} of {replies} unsynced"


# ----------------------------------------------------------------------------- the cuts


@dataclass(frozen=True)
class Cut:
    at_s: float
    """Offset from the start of the flow (a cut waits until the services have run for
    UP_AT_LEAST_S since the previous one)."""
    truncate: bool
    down_s: float

    def __str__(self) -> str:
        kind = "truncated" if self.truncate else "plain"
        return f"{self.at_s:5.2f}s {kind} cut, down {self.down_s:.2f}s"


def cut_schedule(rng: random.Random, flow_s: float) -> list[Cut]:
    kinds = [False] * CUTS + [True] * CUTS
    rng.shuffle(kinds)
    margin = 1.5
    slot = (flow_s - 2 * margin) / len(kinds)
    return [
        Cut(margin + index * slot + rng.uniform(0.3, 0.9) * slot, truncate, rng.uniform(*DOWN_S))
        for index, truncate in enumerate(kinds)
    ]


@dataclass
class CutDone:
    cut: Cut
    began_at: float
    """time.monotonic() when the SIGKILLs were sent."""
    services_started_at: float
    """When the services killed by this cut had been started."""
    frames_before: int
    """Entries in the frames stream when the services killed here were started."""
    at_cut: dict[aof.StreamId, int] = field(default_factory=dict)
    """The frames stream at the cut (the untouched AOF): entry id -> reading number."""
    after: set[aof.StreamId] = field(default_factory=set)
    """The frames stream once Redis was up again."""
    last_seq: int | None = None
    """The reading in the last entry of the frames stream once Redis was up again."""
    ingest_acknowledged: int = 0
    marker_acknowledged: int = 0
    marker_lost: int = 0
    offset: int | None = None
    """Where the truncation cut the last incr file, and its size then."""
    size: int = 0
    lost_publisher_acks: int = 0
    """Records whose XACK by the publisher was behind the cut: published again."""
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> dict[aof.StreamId, int]:
        return {i: seq for i, seq in self.at_cut.items() if i not in self.after}

    def __str__(self) -> str:
        text = (
            f"{self.cut}: {len(self.at_cut) - self.frames_before} frames written by its ingest, "
            f"{self.ingest_acknowledged} acknowledged to it; {self.marker_acknowledged} marker "
            f"XADDs acknowledged"
        )
        if self.offset is not None:
            text += (
                f"; AOF cut at {self.offset}/{self.size} bytes: {len(self.lost)} frames "
                f"({ranges(set(self.lost.values()))}) and {self.marker_lost} marker entries "
                f"lost, {self.lost_publisher_acks} publisher acknowledgements"
            )
        return text


class MarkerWriter:
    """A test client appending to a marker stream of its own, all the time, through the cuts:
    the ids of the XADDs Redis answered are what Redis acknowledged. No retries: a write that
    fails is not acknowledged, and the writer parks until `resume()`."""

    def __init__(self, server: PrivateRedis) -> None:
        self._client = redis.Redis(
            host=server.host,
            port=server.port,
            socket_timeout=2,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )
        self.acknowledged: list[aof.StreamId] = []
        self._go = threading.Event()
        self._go.set()
        self._parked = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="marker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            if not self._go.is_set():
                self._parked.set()
                self._go.wait(0.5)
                continue
            try:
                entry_id: Any = self._client.xadd(MARKER_KEY, {"n": number})
            except redis.RedisError:
                self._go.clear()  # Redis is gone: nothing more until the test says so
                continue
            self.acknowledged.append(aof.parse_id(entry_id))
            number += 1
            self._stop.wait(0.004)

    def hold(self) -> list[aof.StreamId]:
        """Park the writer (its write in flight ends first); what Redis acknowledged so far."""
        self._go.clear()
        assert self._parked.wait(10), "the marker writer did not park"
        return list(self.acknowledged)

    def resume(self) -> None:
        self._parked.clear()
        self._go.set()

    def close(self) -> None:
        self._stop.set()
        self._go.set()
        self._thread.join(5)
        self._client.close()


def power_cut(services: Supervisor, server: PrivateRedis, rng: random.Random) -> None:
    """SIGKILL Redis and every service within the same instant (in a random order), then reap."""
    victims = [services.current(name) for name in SERVICES]
    for child in victims:
        child.stopped = True  # killed by the test, not a crash
    pids = [child.pid for child in victims] + [server.pid]
    rng.shuffle(pids)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for child in victims:
        services.stop(child, signal.SIGKILL)
    server.stop(signal.SIGKILL)


def acknowledged_to(child_log: str) -> int:
    """Frames an ingest incarnation logged as written (`frames_written`, debug): each line
    follows a MULTI/EXEC Redis answered. A line torn by the kill is not counted."""
    total = 0
    for line in child_log.splitlines():
        if '"frames_written"' in line:
            try:
                total += int(json.loads(line)["frames"])
            except (ValueError, KeyError):
                continue
    return total


def frame_entries(client: redis.Redis, seq_of: dict[bytes, int]) -> dict[aof.StreamId, int]:
    """The frames stream: entry id -> reading number."""
    return {aof.parse_id(a.entry_id.encode()): a.seq for a in accepted_frames(client, KEYS, seq_of)}


def groups_behind_their_stream(client: redis.Redis) -> list[str]:
    """Consumer groups whose last-delivered-id is beyond their stream's last id."""
    wrong = []
    for stream in (KEYS.frames, KEYS.records):
        if not client.exists(stream):
            continue
        info: Any = client.xinfo_stream(stream)
        last = aof.parse_id(info["last-generated-id"])
        groups: Any = client.xinfo_groups(stream)
        for group in groups:
            delivered = aof.parse_id(group["last-delivered-id"])
            if delivered > last:
                wrong.append(f"{stream} {group['name']!r}: {delivered} > {last}")
    return wrong


def start_service(services: Supervisor, name: str) -> None:
    level = {"GATEWAY_LOG_LEVEL": "debug"} if name == "ingest" else {}
    services.start_service(name, SERVICES[name], GATEWAY_CONSUMER_NAME=f"cut-{name}", **level)


@dataclass
class CutRunner(InBackground):
    """Carries out the cuts in a thread; per cut, the checks of what Redis kept."""

    NAME = "cuts"
    LATE = "the power cuts did not finish in time"
    FAILED = "a power cut could not be carried out"

    schedule: list[Cut]
    services: Supervisor
    server: PrivateRedis
    scratch: PrivateRedis
    marker: MarkerWriter
    seq_of: dict[bytes, int]
    rng: random.Random
    done: list[CutDone] = field(default_factory=list)
    _marker_gone: set[aof.StreamId] = field(default_factory=set)
    """Acknowledged marker entries a truncation took."""

    def run(self, t0: float) -> None:
        frames_before, phase = 0, self._phase_start()
        up_at = self.services.current("ingest").started_at
        for cut in self.schedule:
            if self.until(max(t0 + cut.at_s, up_at + UP_AT_LEAST_S)):
                return
            done = CutDone(cut, time.monotonic(), up_at, frames_before)
            self.done.append(done)
            self._cut(done, phase)
            frames_before, phase = len(done.after), self._phase_start()
            self.marker.resume()
            for name in SERVICES:
                start_service(self.services, name)
            up_at = time.monotonic()

    def _phase_start(self) -> tuple[str, int]:
        """The last incr file and its size: the AOF written since is this phase's."""
        last = aof.Manifest.read(self.server.aof_dir).last_incr
        return last.name, last.stat().st_size

    def _cut(self, done: CutDone, phase: tuple[str, int]) -> None:
        power_cut(self.services, self.server, self.rng)
        acknowledged = self.marker.hold()
        done.ingest_acknowledged = acknowledged_to(self.services.current("ingest").log())
        done.marker_acknowledged = len(acknowledged)
        marker_at_cut: list[aof.StreamId] = []
        kept = None
        if done.cut.truncate:
            marker_at_cut, kept = self._truncate(done, phase)
        self.until(done.began_at + done.cut.down_s)
        self.server.start()
        client = self.server.client()
        try:
            after = frame_entries(client, self.seq_of)
            marker_after = ids_in(client, MARKER_KEY)
            done.problems.extend(groups_behind_their_stream(client))
        finally:
            client.close()
        done.after = set(after)
        done.last_seq = after[max(after)] if after else None
        if kept is None:
            done.at_cut, marker_at_cut = after, marker_after
        else:
            kept_frames, kept_marker = kept
            if sorted(after) != kept_frames:
                done.problems.append(
                    f"the frames stream after the truncation has {len(after)} entries, not the "
                    f"{len(kept_frames)} the AOF holds before the cut "
                    f"(lost {ranges(set(done.lost.values()))})"
                )
            if marker_after != kept_marker:
                done.problems.append(
                    f"the marker stream after the truncation has {len(marker_after)} entries, "
                    f"not the {len(kept_marker)} the AOF holds before the cut"
                )
            done.marker_lost = len(set(marker_at_cut) - set(marker_after))
        # What Redis acknowledged was in its AOF at the cut (for a plain cut: is there now),
        # but for what an earlier truncation took.
        missing = set(acknowledged) - self._marker_gone - set(marker_at_cut)
        if missing:
            done.problems.append(f"{len(missing)} acknowledged marker XADDs missing at the cut")
        self._marker_gone |= set(acknowledged) - set(marker_after)
        written = len(done.at_cut) - done.frames_before
        if not done.ingest_acknowledged <= written <= done.ingest_acknowledged + BATCH_FRAMES:
            done.problems.append(
                f"ingest logged {done.ingest_acknowledged} frames acknowledged, the stream "
                f"gained {written} (at most one batch more may have been executed unanswered)"
            )

    def _truncate(
        self, done: CutDone, phase: tuple[str, int]
    ) -> tuple[list[aof.StreamId], tuple[list[aof.StreamId], list[aof.StreamId]]]:
        """Cut the last incr file at a random offset of its last TAIL_BYTES (of this phase).
        Sets the state at the cut (an untouched copy loaded by the scratch Redis); returns the
        marker stream at the cut and the (frames, marker) entries the cut AOF must keep."""
        manifest = aof.Manifest.read(self.server.aof_dir)
        last = manifest.last_incr
        data = last.read_bytes()
        parsed = list(aof.commands(data))
        # What the base and the earlier incr files hold (a rewrite may have made them): the
        # copy loaded without the last file's commands.
        load_copy(self.scratch, self.server.aof_dir, empty=last.name)
        client = self.scratch.client()
        try:
            before_frames = ids_in(client, KEYS.frames)
            before_marker = ids_in(client, MARKER_KEY)
        finally:
            client.close()
        load_copy(self.scratch, self.server.aof_dir)
        client = self.scratch.client()
        try:
            done.at_cut = frame_entries(client, self.seq_of)
            marker_at_cut = ids_in(client, MARKER_KEY)
        finally:
            client.close()
            self.scratch.stop(signal.SIGKILL)
        whole = aof.loaded(parsed)
        replayed = (
            aof.stream_ids(whole, FRAMES_KEY, before_frames),
            aof.stream_ids(whole, MARKER_KEY.encode(), before_marker),
        )
        if replayed != (sorted(done.at_cut), marker_at_cut):
            done.problems.append("the AOF's commands do not replay to what Redis loads from it")
        name, start = phase
        low = max(start if name == last.name else 0, len(data) - TAIL_BYTES)
        done.offset, done.size = self.rng.randint(low, len(data)), len(data)
        kept = aof.loaded(parsed, done.offset)
        records, group = KEYS.records.encode(), PUBLISHER_GROUP.encode()
        done.lost_publisher_acks = sum(
            len(command.args) - 3
            for command in whole[len(kept) :]
            if command.name == b"XACK" and command.args[1:3] == (records, group)
        )
        os.truncate(last, done.offset)
        return marker_at_cut, (
            aof.stream_ids(kept, FRAMES_KEY, before_frames),
            aof.stream_ids(kept, MARKER_KEY.encode(), before_marker),
        )


# ----------------------------------------------------------------------------- fixtures
# mosquitto (the platform's broker: not in the cut), paced_line, supervisor: conftest


@pytest.fixture
def redis_server(private_redis: Callable[..., PrivateRedis]) -> PrivateRedis:
    return private_redis("always", extra_args=REDIS_ARGS)


@pytest.fixture
def scratch_redis(private_redis: Callable[..., PrivateRedis]) -> PrivateRedis:
    """Loads a copy of the AOF as the cut left it, before the truncation."""
    return private_redis("always", start=False, extra_args=REDIS_ARGS)


@pytest.fixture
def services(
    supervisor: Supervisor,
    redis_server: PrivateRedis,
    mosquitto: PrivateBroker,
    paced_line: ModemLine,
) -> Supervisor:
    supervisor.env = pipeline_env(
        redis_url=redis_server.url,
        mqtt_port=mosquitto.port,
        line=paced_line,
        prefix=PREFIX,
        topic_root=TOPIC_ROOT,
        WRITE_BATCH_FRAMES=str(BATCH_FRAMES),
        **QUICK_RECOVERY,
    )
    return supervisor


# ----------------------------------------------------------------------------- the test


def test_power_cuts_keep_what_redis_acknowledged(
    redis_server: PrivateRedis,
    scratch_redis: PrivateRedis,
    mosquitto: PrivateBroker,
    paced_line: ModemLine,
    subscriber: Callable[..., MqttWatch],
    services: Supervisor,
) -> None:
    seed = choose_seed("GATEWAY_CHAOS_SEED")
    rng = random.Random(seed)
    seq_of = seq_of_alp(FRAMES)
    schedule = cut_schedule(rng, line_seconds(FRAMES))
    tag = f"[seed {seed}]"
    print(f"\npower-cut seed {seed} (GATEWAY_CHAOS_SEED={seed} replays it): {FRAMES} frames")
    for cut in schedule:
        print(f"  {cut}")

    watch = watch_readings(subscriber, mosquitto, TOPIC_ROOT, durable=True)
    for name in SERVICES:
        start_service(services, name)
    wait_ready(services, SERVICES)

    # ---- frames at line rate, a marker writer beside them, the cuts
    marker = MarkerWriter(redis_server)
    try:
        runner = CutRunner(schedule, services, redis_server, scratch_redis, marker, seq_of, rng)
        flow = PacedFlow(paced_line, FRAMES).start()
        started = flow.started_at
        runner.start(started)
        flow.join(timeout_s=line_seconds(FRAMES) + 90, tag=tag)
        flowed_s = flow.flowed_s()
        runner.join(timeout_s=90, abort_s=30)
    finally:
        marker.close()
    done = runner.done
    lost_by_cut = {seq for d in done for seq in d.lost.values()}
    for d in done:
        print(f"  {d}")
    problems = [f"cut {n + 1} ({d.cut}): {p}" for n, d in enumerate(done) for p in d.problems]
    assert not problems, f"{tag} what Redis kept:\n" + "\n".join(problems)

    # ---- drain: frames stream still, both groups empty, every surviving reading received
    client = redis_server.client()
    wait_drained(
        client, KEYS, paced_line, watch, seq_of, timeout_s=DRAIN_TIMEOUT_S, tag=tag,
        logs=services.logs, busy=lambda: not services.current("ingest").alive(),
    )  # fmt: skip
    drained_s = time.monotonic() - started - flowed_s
    time.sleep(1.0)  # a late duplicate would arrive now
    delivery = read_delivery(client, KEYS, watch.snapshot(), seq_of, tag)

    # ---- what survived, measured from outside the services
    per_seq = delivery.entries_per_seq
    delivered = flow.delivered()
    not_accepted = delivered - set(per_seq) - lost_by_cut
    windows, previous = [], started
    for d in done:
        # A healthy ingest writes what it read within milliseconds: a cut takes the last
        # second; an ingest that had just started was still reading the line's backlog.
        held = d.began_at - d.services_started_at < UP_AT_LEAST_S
        windows.append(((previous if held else d.began_at) - 1.0, d.began_at))
        previous = d.began_at
    unexplained = not_accepted - flow.sent_in(not_accepted, windows)
    extras_after: Counter[int] = Counter()
    repeated, redelivered = delivery.repeats()
    for message in repeated:
        before = [n for n, d in enumerate(done) if d.began_at <= message.monotonic]
        extras_after[before[-1] if before else -1] += 1
    print(
        f"power-cut seed {seed}: flow {flowed_s:.1f} s, drained {drained_s:.1f} s later; "
        f"{len(per_seq)}/{FRAMES} readings survive; {FRAMES - len(delivered)} lost on the line "
        f"while no ingest read it; {len(not_accepted)} read by killed ingests before Redis "
        f"took them; {len(lost_by_cut)} lost behind AOF cuts; extra copies at the subscriber "
        f"per cut {dict(extras_after)} ({redelivered} broker redeliveries)\n"
        f"  lost with a killed ingest {ranges(not_accepted)}"
    )

    # ---- no service exited by itself, none logged a traceback, all stop cleanly
    check_clean_exit(services, list(SERVICES), tag)

    # ---- ingest: each reading once; a frame Redis never took was in a killed ingest's hands
    assert not lost_by_cut & set(per_seq), f"{tag} readings lost behind a cut came back"
    assert delivery.ingest_repeats == 0, f"{tag} readings written twice by ingest"
    assert not unexplained, (
        f"{tag} frames the line delivered and no cut explains were never accepted: "
        f"{ranges(unexplained)} (loss windows, s from the start: "
        f"{[(round(a - started, 2), round(b - started, 2)) for a, b in windows]})"
    )

    # ---- ingest resumed the modem counter from the last frame Redis kept, so that what a cut
    # took is counted as missed (the counter is saved in the same MULTI/EXEC as the frames)
    resumed = []
    for d, child in zip(done, services.incarnations("ingest")[1:], strict=True):
        line = next(line for line in child.log().splitlines() if '"counter_resumed"' in line)
        resumed.append((json.loads(line)["previous_counter"], ((d.last_seq or 0) + 1) % 256))
    assert all(got == want for got, want in resumed), f"{tag} resumed from {resumed}"

    # ---- decoder: exactly one record per surviving frame, none for a frame that is gone, no
    # dead letter, nothing pending; publisher: every surviving reading reached the subscriber,
    # with its topic, values and stamp; one it got and Redis no longer has was behind a cut
    check_delivery(client, KEYS, delivery, topic_root=TOPIC_ROOT, tag=tag, gone=lost_by_cut)
    client.close()

    # ---- duplicates: the killed publisher's window, and acknowledgements behind a cut
    assert -1 not in extras_after, f"{tag} duplicates before any cut: {extras_after}"
    over = {
        f"cut {n + 1}": extra
        for n, extra in extras_after.items()
        if extra > WINDOW + done[n].lost_publisher_acks
    }
    assert not over, f"{tag} more duplicates than the window plus the lost acknowledgements: {over}"

    # ---- not a vacuous pass
    assert len(done) == len(schedule), tag
    assert all(d.marker_acknowledged > 0 for d in done), tag
    assert all(d.ingest_acknowledged > 0 for d in done), f"{tag} a cut before ingest wrote"
    truncated = [d for d in done if d.cut.truncate]
    assert sum(len(d.lost) for d in truncated) > 0, f"{tag} no truncation cut a frame off"
    assert len(per_seq) >= 0.5 * FRAMES, f"{tag} only {len(per_seq)} readings survive"
