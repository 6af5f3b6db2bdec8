"""Disk full (issue 14, scenario 1): Redis's AOF on a small ext4 filesystem that fills up while
frames flow at the line rate, then is freed; several times at full scale.

Redis's AOF lives on a loop-mounted ext4 image of its own (gateway_devkit.disks.SmallDisk: an
SD card in miniature; the test needs root for the mount and fails saying so otherwise). A filler
file takes every free block, and Redis's next append to its AOF fails with ENOSPC. What follows
depends on the AOF policy; docker-compose.yml offers both (REDIS_APPENDFSYNC):

- `always` (the default): Redis never answers a write it has not made durable, so on a failed
  AOF write it logs "Can't recover from AOF write error when the AOF fsync policy is 'always'.
  Exiting..." and exits (code 1), the unanswered write lost with it. Compose's
  `restart: unless-stopped` starts it again (RestartPolicy here, its delay capped at 1 s instead
  of Docker's minute): it loads its AOF (reading needs no space) and exits again at the first
  write that needs a new block, until space is freed. The services see Redis come and go; only
  ingest's watch of the disk (GATEWAY_REDIS_DATA_DIR) can name the cause.
- `everysec`: Redis keeps running, refuses every write (XREADGROUP and XACK included) and PING
  with `MISCONF Errors writing to the AOF file: No space left on device`, serves reads, and
  retries the write by itself every second: once space is freed it takes writes again.

Checked from outside the services, either way: ingest keeps reading the port (the pty never
backs up) and buffers within GATEWAY_BUFFER_FRAMES, dropping only beyond it and counting exactly
what it dropped; decoder and publisher wait without spinning (CPU time of each process over the
outage, /proc/PID/stat) and without dead letters; no service exits; the condition shows in the
health reasons, in metrics and in `gatewayctl status`; after the space is freed everything flows
again: every frame read and not counted as dropped is accepted once, exactly one record per
accepted frame, every accepted reading at an MQTT subscriber, nothing pending.

GATEWAY_CHAOS_SCALE=full (make chaos): a longer flow and four fill/free cycles at seeded times
and lengths (GATEWAY_CHAOS_SEED), one of them longer than the ingest buffer lasts.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pytest
import redis

from gateway_common.streams import StreamKeys
from gateway_devkit.disks import SmallDisk, needs_root
from gateway_devkit.modem_line import ModemLine
from gateway_devkit.polling import wait_until
from gateway_devkit.processes import BIN, Supervisor, clean_env
from gateway_devkit.restart_policy import RestartPolicy
from gateway_devkit.scrape import sample
from gateway_devkit.servers import PrivateBroker, PrivateRedis

from .delivery import (
    FRAMES_PER_S,
    PIPELINE,
    WINDOW,
    PacedFlow,
    check_clean_exit,
    check_delivery,
    health_record,
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
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from gateway_devkit.mqtt_watch import MqttWatch

pytestmark = [pytest.mark.integration, pytest.mark.system, pytest.mark.chaos]

PREFIX = "diskfull"
TOPIC_ROOT = "diskfull"
BUFFER_FRAMES = 1500
"""GATEWAY_BUFFER_FRAMES: ~13 s of the line; the full scale has one outage longer than that."""
DISK_MIB = 64
MIN_FREE_MB = 4
"""GATEWAY_DISK_MIN_FREE_MB: the disk has ~58 MiB free until the filler comes."""
PERSIST = "Redis cannot persist: No space left on device"
DISK_LOW = "Redis's data directory"
REDIS_MAX_RESTART_DELAY_S = 1.0
"""The restart policy's cap (Docker's is a minute: on the Pi, Redis may take that long to
return once space is freed)."""
CPU_WINDOW_S = 3.0
"""Each outage lasts at least this long once visible: the CPU time is measured over it."""
MAX_CPU_SHARE = {"ingest": 0.35, "decoder": 0.1, "publisher": 0.1}
"""CPU seconds per second of outage: ingest still reads and frames ~113 frames/s; the others only
wait (a spin would take a whole core). Margins for a loaded 2-core machine."""
UNREAD_LIMIT = 2048
"""Bytes the pty may hold unread at any moment: ingest reads promptly (a few frames' worth)."""
VISIBLE_TIMEOUT_S = 15.0
"""The disk is measured every 5 s (gateway_common.disk_space); the rest within a second or two."""
RECOVERY_TIMEOUT_S = 40.0
"""The publisher's backoff reaches 10 s, the decoder's 5 s; Redis restarts within 1 s here."""
DRAIN_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Cycle:
    at_s: float
    """Offset from the start of the flow when the disk is filled."""
    down_s: float
    """How long it stays full (at least until the condition is visible plus CPU_WINDOW_S)."""

    def __str__(self) -> str:
        return f"fill at {self.at_s:5.1f} s for {self.down_s:4.1f} s"


def schedule(rng: random.Random) -> tuple[float, list[Cycle]]:
    """(flow seconds, fill/free cycles): one short cycle, or at full scale four, one of them
    longer than the ingest buffer lasts (it overflows, counted)."""
    if not full_scale():
        return 15.0, [Cycle(2.0, 6.0)]
    buffer_s = BUFFER_FRAMES / FRAMES_PER_S
    downs = [rng.uniform(5.0, 10.0) for _ in range(3)] + [buffer_s + rng.uniform(5.0, 8.0)]
    rng.shuffle(downs)
    cycles, at = [], 3.0
    for down in downs:
        cycles.append(Cycle(round(at, 1), round(down, 1)))
        at += down + rng.uniform(12.0, 18.0)  # flowing freely in between, the backlog drained
    return at + 5.0, cycles


# ----------------------------------------------------------------------------- observation


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:  # noqa: PTH123
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def health_reason(services: Supervisor, name: str) -> str:
    """The service's health file: "" when healthy, else its reason."""
    record = health_record(services, name)
    if record is None:
        return "(no health file)"
    return "" if record.get("ok") else str(record.get("reason", ""))


def gatewayctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "gatewayctl"), *args],
        env={**env, "COLUMNS": "240"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def buffered(ports: dict[str, int]) -> float | None:
    return sample(ports["ingest"], "gateway_ingest_buffered_frames")


def missing_signs(mode: str, services: Supervisor, ports: dict[str, int]) -> list[str]:
    """What does not show the full disk yet, in health reasons and metrics."""
    health = {name: health_reason(services, name) for name in PIPELINE}
    missing = []
    if DISK_LOW not in health["ingest"]:
        missing.append(f"ingest's health: {health['ingest']!r}")
    free = sample(ports["ingest"], "gateway_redis_disk_free_bytes")
    if free is None or free >= MIN_FREE_MB << 20:
        missing.append(f"gateway_redis_disk_free_bytes {free}")
    for name in PIPELINE:
        if mode == "everysec":  # Redis runs and says why it refuses
            refusing = sample(ports[name], "gateway_redis_refusing_writes", reason="persistence")
            if refusing != 1:
                missing.append(f"{name}: gateway_redis_refusing_writes{{persistence}} {refusing}")
            if PERSIST not in health[name]:
                missing.append(f"{name}'s health: {health[name]!r}")
        elif name != "ingest" and "redis: unreachable" not in health[name]:
            missing.append(f"{name}'s health: {health[name]!r}")  # Redis is gone: no reason
    return missing


@dataclass
class Outage:
    cycle: Cycle
    visible_after_s: float = 0.0
    recovered_after_s: float = 0.0
    """From the space freed to everything healthy and ingest's buffer written."""
    cpu_share: dict[str, float] = field(default_factory=dict)
    buffered_max: float = 0.0
    unread_max: int = 0
    redis_restarts: int = 0
    health: dict[str, str] = field(default_factory=dict)
    status: str = ""

    def __str__(self) -> str:
        cpu = {name: round(share, 3) for name, share in self.cpu_share.items()}
        return (
            f"{self.cycle}: visible after {self.visible_after_s:.1f} s, recovered "
            f"{self.recovered_after_s:.1f} s after the space was freed; ingest buffered up to "
            f"{self.buffered_max:.0f}, the line held up to {self.unread_max} B unread; CPU "
            f"share {cpu}; Redis restarts {self.redis_restarts}"
        )


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    reason = needs_root()
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    disk = SmallDisk(tmp_path / "disk", DISK_MIB).mount()
    try:
        yield disk
    finally:
        disk.unmount()


@pytest.fixture(params=["always", "everysec"])
def redis_on_disk(
    request: pytest.FixtureRequest, tmp_path: Path, small_disk: SmallDisk
) -> Iterator[PrivateRedis]:
    """Redis with its AOF on the small disk (its log stays outside it)."""
    server = PrivateRedis(
        tmp_path / "redis", appendfsync=request.param, data_dir=small_disk.mount_point
    )
    server.start()
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)  # before the disk is unmounted


@pytest.fixture
def restart_policy(redis_on_disk: PrivateRedis) -> Iterator[RestartPolicy]:
    """Docker's `restart: unless-stopped` for Redis; stopped before Redis is (even after a
    failure: a Redis it restarted then would hold the disk's mount)."""
    policy = RestartPolicy(redis_on_disk, max_delay_s=REDIS_MAX_RESTART_DELAY_S).start()
    yield policy
    policy.stop()


# mosquitto, paced_line, supervisor: conftest


@pytest.fixture
def ports() -> dict[str, int]:
    return pipeline_ports()


@pytest.fixture
def env(
    redis_on_disk: PrivateRedis,
    small_disk: SmallDisk,
    mosquitto: PrivateBroker,
    paced_line: ModemLine,
) -> dict[str, str]:
    return pipeline_env(
        redis_url=redis_on_disk.url,
        mqtt_port=mosquitto.port,
        line=paced_line,
        prefix=PREFIX,
        topic_root=TOPIC_ROOT,
        # Redis's disk, as the volume mounted read-only into ingest (and gatewayctl there)
        REDIS_DATA_DIR=str(small_disk.mount_point),
        DISK_MIN_FREE_MB=str(MIN_FREE_MB),
        # ingest
        BUFFER_FRAMES=str(BUFFER_FRAMES),
        REDIS_BACKOFF_MAX_S="0.5",
        # decoder, publisher
        BLOCK_MS="500",
        WINDOW_MESSAGES=str(WINDOW),
    )


@pytest.fixture
def services(
    redis_on_disk: PrivateRedis, supervisor: Supervisor, env: dict[str, str], ports: dict[str, int]
) -> Supervisor:
    """The services, started and ready (the supervisor, set up after Redis, stops them first)."""
    supervisor.env = env
    # While Redis refuses (MISCONF) a restart would change nothing: a service must not take the
    # watchdog's way out, whose limit is set below every outage here. While Redis is gone (under
    # `always`) a decoder or publisher may: that is the watchdog's design (default 300 s).
    unhealthy_exit_s = "2" if redis_on_disk.appendfsync == "everysec" else "300"
    start_pipeline(supervisor, ports, consumer_prefix="", GATEWAY_UNHEALTHY_EXIT_S=unhealthy_exit_s)
    return supervisor


# ----------------------------------------------------------------------------- the test


def test_disk_full_loses_no_accepted_frame(
    redis_on_disk: PrivateRedis,
    small_disk: SmallDisk,
    mosquitto: PrivateBroker,
    paced_line: ModemLine,
    subscriber: Callable[..., MqttWatch],
    services: Supervisor,
    env: dict[str, str],
    ports: dict[str, int],
    restart_policy: RestartPolicy,
) -> None:
    mode = str(redis_on_disk.appendfsync)
    seed = choose_seed("GATEWAY_CHAOS_SEED")
    flow_s, cycles = schedule(random.Random(seed))
    count = int(flow_s * FRAMES_PER_S)
    seq_of = seq_of_alp(count)
    tag = f"[appendfsync {mode}, seed {seed}]"
    print(f"\ndisk full {tag}: {count} frames over {flow_s:.0f} s, {DISK_MIB} MiB disk")
    for cycle in cycles:
        print(f"  {cycle}")

    watch = watch_readings(subscriber, mosquitto, TOPIC_ROOT)
    assert wait_until(lambda: not any(health_reason(services, n) for n in PIPELINE), 15), (
        f"{tag} unhealthy before the test: {[health_reason(services, n) for n in PIPELINE]}"
    )
    policy = restart_policy

    # ---- frames at line rate from a thread; the disk filled and freed on schedule here
    flow = PacedFlow(paced_line, count).start()
    outages = []
    for cycle in cycles:
        outage = Outage(cycle)
        outages.append(outage)
        run_cycle(
            mode, outage, flow.started_at, small_disk, services, env, ports, paced_line, policy
        )
    flow.join(flow_s + 30, tag)
    policy.stop()
    assert policy.error is None, f"{tag} the restart policy failed: {policy.error!r}"

    # ---- drain: the line read, ingest's buffer written, both groups empty, readings received
    client = redis_on_disk.client()
    keys = StreamKeys(PREFIX)
    wait_drained(
        client, keys, paced_line, watch, seq_of, timeout_s=DRAIN_TIMEOUT_S, tag=tag,
        logs=services.logs, busy=lambda: buffered(ports) != 0,
    )  # fmt: skip
    time.sleep(1.0)  # a late duplicate would arrive now
    delivery = read_delivery(client, keys, watch.snapshot(), seq_of, tag)
    counted = sample(ports["ingest"], "gateway_ingest_dropped_frames_total", reason="buffer_full")
    dropped_counted = int(counted or 0)

    # ---- what happened, measured from outside the services
    per_seq = delivery.entries_per_seq
    delivered = flow.delivered()
    not_accepted = delivered - set(per_seq)
    extras = delivery.extras
    restarts = policy.restarts
    print(
        f"disk full {tag}: {len(per_seq)}/{count} readings accepted; "
        f"{count - len(delivered)} lost on the line; {len(not_accepted)} read and not "
        f"accepted ({ranges(not_accepted)}), {dropped_counted} counted dropped; "
        f"{delivery.ingest_repeats} written twice; {extras} extra copies at the "
        f"subscriber; Redis restarted {len(restarts)} times (exit codes "
        f"{dict(Counter(r.exit_code for r in restarts))}); disk free at the end "
        f"{small_disk.free_bytes() >> 20} MiB"
    )
    for outage in outages:
        print(f"  {outage}\n    health {outage.health}\n    gatewayctl status: {outage.status}")

    # ---- nothing exited, nothing logged a traceback, everything stops cleanly
    check_clean_exit(services, list(PIPELINE), tag)

    # ---- the outages were what this test is about
    for outage in outages:
        if mode == "always":
            assert outage.redis_restarts > 0, f"{tag} Redis never exited: {outage}"
        else:
            assert outage.redis_restarts == 0, f"{tag} Redis exited under everysec: {outage}"

    # ---- ingest: read everything, dropped only beyond its buffer, and counted exactly
    assert delivered == set(range(count)), f"{tag} the line lost frames: ingest stalled"
    assert len(not_accepted) == dropped_counted, (
        f"{tag} {len(not_accepted)} frames read and never accepted, {dropped_counted} counted"
    )
    overflowing = [o for o in outages if o.cycle.down_s * FRAMES_PER_S > 1.2 * BUFFER_FRAMES]
    if not overflowing:
        assert not not_accepted, f"{tag} frames dropped within the buffer: {ranges(not_accepted)}"
    else:
        assert not_accepted, f"{tag} an outage longer than the buffer dropped nothing"
    assert delivery.ingest_repeats == 0, f"{tag} frames accepted twice"

    # ---- decoder: one record per accepted frame, no dead letter, nothing pending; publisher:
    # every accepted reading at the subscriber, with its topic, values and stamp
    check_delivery(client, keys, delivery, topic_root=TOPIC_ROOT, tag=tag)
    client.close()
    assert extras <= WINDOW * len(cycles), f"{tag} {extras} duplicates"

    # ---- while the disk was full: ingest kept reading, nobody spun
    for outage in outages:
        assert outage.unread_max <= UNREAD_LIMIT, f"{tag} ingest let the line back up: {outage}"
        for name, share in outage.cpu_share.items():
            assert share <= MAX_CPU_SHARE[name], f"{tag} {name} used {share:.0%} CPU: {outage}"


def run_cycle(
    mode: str,
    outage: Outage,
    started: float,
    disk: SmallDisk,
    services: Supervisor,
    env: dict[str, str],
    ports: dict[str, int],
    line: ModemLine,
    policy: RestartPolicy,
) -> None:
    """Fill the disk at the cycle's time, check the condition shows, measure the services while
    it lasts, free the disk and wait until everything is healthy and written again."""
    tag = f"[appendfsync {mode}, {outage.cycle}]"
    time.sleep(max(0.0, started + outage.cycle.at_s - time.monotonic()))
    restarts_before = len(policy.restarts)
    disk.fill()
    filled_at = time.monotonic()

    # ---- visible: health reasons and metrics, then gatewayctl status
    signs: list[str] = []

    def shown() -> bool:
        signs[:] = missing_signs(mode, services, ports)
        return not signs

    if not wait_until(shown, VISIBLE_TIMEOUT_S, interval_s=0.2):
        pytest.fail(f"{tag} the full disk does not show: {signs}\n{services.logs(2000)}")
    outage.visible_after_s = time.monotonic() - filled_at
    outage.health = {name: health_reason(services, name) for name in PIPELINE}
    status = gatewayctl(env, "status")
    said = (status.stdout + status.stderr).splitlines()
    outage.status = " | ".join(text for text in said if "disk" in text or "redis" in text)
    assert "has 0.0 MiB free" in status.stdout + status.stderr, f"{tag} {outage.status}"
    if mode == "everysec":  # Redis runs, refusing: status reads it all and names why
        assert status.returncode == 0, f"{tag} gatewayctl status: {status.stderr}"
        assert f"redis: {PERSIST}" in status.stdout, f"{tag} {status.stdout}"
        as_json = json.loads(gatewayctl(env, "status", "--json").stdout)
        assert PERSIST in as_json["redis"]["problems"], f"{tag} {as_json}"
        assert as_json["disk"]["low"], f"{tag} {as_json}"

    # ---- while it lasts: CPU time of each service, ingest's buffer, the line
    pids = {name: services.current(name).pid for name in PIPELINE}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    measured_from = time.monotonic()
    until = max(filled_at + outage.cycle.down_s, measured_from + CPU_WINDOW_S)
    while time.monotonic() < until:
        outage.unread_max = max(outage.unread_max, line.unread())
        outage.buffered_max = max(outage.buffered_max, buffered(ports) or 0)
        time.sleep(0.1)
    elapsed = time.monotonic() - measured_from
    outage.cpu_share = {
        name: (cpu_seconds(pid) - cpu_before[name]) / elapsed for name, pid in pids.items()
    }
    outage.redis_restarts = len(policy.restarts) - restarts_before

    # ---- freed: everything healthy again and ingest's buffer written
    disk.free()
    freed_at = time.monotonic()

    def recovered() -> bool:
        return buffered(ports) == 0 and not any(health_reason(services, n) for n in PIPELINE)

    if not wait_until(recovered, RECOVERY_TIMEOUT_S, interval_s=0.2):
        health = {name: health_reason(services, name) for name in PIPELINE}
        pytest.fail(f"{tag} no recovery after the space was freed: {health}, {outage}")
    outage.recovered_after_s = time.monotonic() - freed_at


# ----------------------------------------------------------------------------- Redis alone


@pytest.mark.parametrize("mode", ["always", "everysec"])
def test_aof_rewrite_and_restart_on_a_full_disk(
    mode: Literal["always", "everysec"], tmp_path: Path, small_disk: SmallDisk
) -> None:
    """What Redis does on a disk filling up, as an operator meets it: the AOF rewrite
    (auto-aof-rewrite; BGREWRITEAOF here) fails first, visible in `gatewayctl status` while
    writes still work; then the appends fail (exit under `always`, MISCONF under `everysec`);
    Redis starts again on the full disk and serves what it had; freed, all is well again."""
    server = PrivateRedis(tmp_path / "redis", appendfsync=mode, data_dir=small_disk.mount_point)
    server.start()
    env = clean_env(GATEWAY_REDIS_URL=server.url, GATEWAY_STREAM_PREFIX=PREFIX)
    try:
        client = server.client()
        # ~2 MB of AOF base after a rewrite (random bytes: an RDB base compresses the rest)
        pipe = client.pipeline(transaction=False)
        for _ in range(6000):
            pipe.xadd("s", {"d": os.urandom(300)})
        pipe.execute()
        wait_until(lambda: not client.info("persistence")["aof_rewrite_in_progress"], 10)
        client.bgrewriteaof()
        wait_until(lambda: not client.info("persistence")["aof_rewrite_in_progress"], 10)
        acknowledged = 6000

        # ---- room for appends, not for a new base file: the rewrite fails, writes go on
        small_disk.fill(leave_bytes=300_000)
        client.bgrewriteaof()
        assert wait_until(lambda: not client.info("persistence")["aof_rewrite_in_progress"], 10)
        persistence: Any = client.info("persistence")
        assert persistence["aof_last_bgrewrite_status"] == "err", persistence
        client.xadd("s", {"d": b"after the failed rewrite"})
        acknowledged += 1
        status = gatewayctl(env, "status")
        assert status.returncode == 0, status.stderr
        assert "Redis's last AOF rewrite failed" in status.stdout, status.stdout

        # ---- the appends fail too
        refused: Exception | None = None
        try:
            while True:
                client.xadd("s", {"d": os.urandom(300)})
                acknowledged += 1
        except redis.ConnectionError as exc:  # always: Redis exited
            refused = exc
        except redis.ResponseError as exc:  # everysec: MISCONF
            refused = exc
        if mode == "always":
            assert isinstance(refused, redis.ConnectionError), refused
            assert wait_until(lambda: not server.alive(), 5), "Redis did not exit"
            assert server.process is not None
            assert server.process.returncode == 1
            assert "Can't recover from AOF write error" in server.log.read_text(encoding="utf-8")
        else:
            assert str(refused).startswith("MISCONF Errors writing to the AOF file"), refused
            with pytest.raises(redis.ResponseError, match="MISCONF"):
                client.ping()
            assert client.xlen("s") >= acknowledged  # reads still work
            status = gatewayctl(env, "status")
            assert status.returncode == 0, status.stderr
            assert f"redis: {PERSIST}" in status.stdout, status.stdout
        client.close()

        # ---- a restart on the full disk: it starts (reading needs no space), serves its data
        server.stop()  # SIGTERM, as `docker compose restart` does
        server.start()
        client = server.client()
        kept = client.xlen("s")
        print(
            f"\n{mode}: {acknowledged} writes acknowledged, {kept} after a restart on a full disk"
        )
        if mode == "always":
            assert kept == acknowledged, "an acknowledged write was lost"
        else:
            # everysec answered writes before their AOF write failed: a stop while the disk is
            # full loses those (they were in Redis's AOF buffer), a second's worth at most.
            assert acknowledged - 50 <= kept <= acknowledged

        # ---- freed: writes, and the rewrite, succeed again
        small_disk.free()
        assert wait_until(lambda: _writes(client), 5), "Redis still refuses writes"
        client.bgrewriteaof()
        assert wait_until(lambda: not client.info("persistence")["aof_rewrite_in_progress"], 10)
        assert client.info("persistence")["aof_last_bgrewrite_status"] == "ok"
        status = gatewayctl(env, "status")
        assert "redis: ok" in status.stdout, status.stdout
        client.close()
    finally:
        server.stop(signal.SIGKILL)


def _writes(client: redis.Redis) -> bool:
    try:
        client.xadd("s", {"d": b"after the space was freed"})
    except redis.RedisError:
        return False
    return True
