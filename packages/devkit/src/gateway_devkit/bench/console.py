"""The field console's memory and page times with many devices: `python -m
gateway_devkit.bench.console`, the last part of `make bench`.

Writes the readings of `--devices` devices (500 by default, one EnergyFile every 10 min) as
ingest, the decoder and the publisher would have left them: a week of frames (the frames
archive's default retention, which the device plots read), the last day of them as records
(the records stream's retention, which the readings index reads), registry entries and some
dead letters, under a scratch stream prefix of the Redis at
GATEWAY_REDIS_URL, starts `gateway-console` on it (no auth, loopback, a free port), waits for
its first snapshot, then asks each page `--rounds` times and prints the times (the whole HTTP
exchange over loopback: an upper bound of the render time) and the console's resident memory
(VmRSS now and VmHWM, its peak, from /proc). The scratch keys are deleted at the end.
Numbers, not a verdict: the issue's budget is 60 MB and 200 ms per page with 500 devices.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Final

from gateway_common.devices import DeviceEntry
from gateway_common.entries import DeadLetter, FrameEntry, Record, encode
from gateway_common.redis_conn import connect
from gateway_common.streams import ENTRY_FIELD, PUBLISHER_GROUP, StreamKeys
from gateway_dash7 import D7Status, EnergyFile, encode_unsolicited
from gateway_devkit.servers import free_port

if TYPE_CHECKING:
    import redis

__all__ = ["main", "seed"]

INTERVAL_S: Final = 600
DAY_S: Final = 86_400
WEEK_S: Final = 7 * DAY_S
"""The frames archive's default retention (GATEWAY_FRAMES_RETENTION_S)."""
STALE_EVERY: Final = 50
"""One device in this many went silent two hours ago (stale)."""
START_TIMEOUT_S: Final = 60.0


def _reading(device_id: str, at: float, rng: random.Random, step: int) -> tuple[Record, bytes]:
    """A record and the ALP of the frame it was decoded from."""
    file = EnergyFile(
        apparent_energy_vah=(100_000 + step * 60, 100_001 + step * 60, 100_002 + step * 60),
        active_energy_wh=(90_000 + step * 50, 90_001 + step * 50, 90_002 + step * 50),
        current_ma=(rng.randint(500, 25_000), rng.randint(500, 25_000), rng.randint(500, 25_000)),
        voltage_v=(rng.randint(226, 238), rng.randint(226, 238), rng.randint(226, 238)),
        measurement_valid=rng.random() > 0.01,
    )
    lb = rng.randint(60, 115)
    status = D7Status(int(device_id, 16).to_bytes(8, "big"), rx_level=lb - 14, link_budget=lb)
    fields: dict[str, int | bool | list[int]] = {
        "apparent_energy_vah": list(file.apparent_energy_vah),
        "active_energy_wh": list(file.active_energy_wh),
        "current_ma": list(file.current_ma),
        "voltage_v": list(file.voltage_v),
        "measurement_valid": file.measurement_valid,
    }
    record = Record(device_id, "energy", fields, lb, lb - 14, at, f"{int(at * 1000)}-0")
    return record, encode_unsolicited(file.file_id, file.encode(), status)


def seed(client: redis.Redis, keys: StreamKeys, devices: int, now: float) -> None:
    """A week of frames of `devices` devices, the last day of them as records, dead letters."""
    rng = random.Random(13)
    ids = [f"B57{index:010X}" for index in range(devices)]
    offsets = [rng.uniform(0, INTERVAL_S) for _ in ids]
    silent_from = {d: now - 7200 for i, d in enumerate(ids) if i % STALE_EVERY == 1}
    last: dict[str, Record] = {}
    counts = dict.fromkeys(ids, 0)
    events = sorted(
        (now - WEEK_S + step * INTERVAL_S + offsets[i], step, device)
        for i, device in enumerate(ids)
        for step in range(WEEK_S // INTERVAL_S)
        if now - WEEK_S + step * INTERVAL_S + offsets[i] < min(now, silent_from.get(device, now))
    )
    pipe = client.pipeline(transaction=False)
    previous_ms = 0
    for sequence, (at, step, device) in enumerate(events):
        record, alp = _reading(device, at, rng, step)
        ms = max(int(at * 1000), previous_ms)
        previous_ms = ms
        frame = FrameEntry(alp=alp, received_at=at, counter=sequence % 256)
        pipe.xadd(keys.frames, {ENTRY_FIELD: encode(frame)}, id=f"{ms}-{sequence}")
        if at >= now - DAY_S:
            pipe.xadd(keys.records, {ENTRY_FIELD: encode(record)}, id=f"{ms}-{sequence}")
            counts[device] += 1
        last[device] = record
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.execute()
    client.xgroup_create(keys.records, PUBLISHER_GROUP, id="$", mkstream=True)
    client.hset(
        keys.devices,
        mapping={
            d: DeviceEntry(
                now - DAY_S, r.received_at, counts[d], r.link_budget, INTERVAL_S
            ).to_bytes()
            for d, r in last.items()
        },
    )
    for index in range(20):
        letter = DeadLetter("unknown_file", "decoder", keys.frames, f"{index}-0", b"\x01" * 30, now)
        client.xadd(keys.dead, {ENTRY_FIELD: encode(letter)})


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310  (loopback, http)
        return int(answer.status), answer.read()


def _memory_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            fields[name] = int(value.split()[0]) / 1024
    return fields


def _start_console(redis_url: str, prefix: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_REDIS_URL=redis_url,
        GATEWAY_STREAM_PREFIX=prefix,
        GATEWAY_CONSOLE_AUTH="off",
        GATEWAY_CONSOLE_HOST="127.0.0.1",
        GATEWAY_CONSOLE_PORT=str(port),
        GATEWAY_HEALTH_FILE=str(log.with_suffix(".health.json")),
        GATEWAY_LOG_FORMAT="json",
    )
    executable = Path(sys.executable).parent / "gateway-console"
    with log.open("wb") as out:
        return subprocess.Popen([str(executable)], env=env, stdout=out, stderr=out)


def _wait_for_snapshot(base: str, process: subprocess.Popen[bytes], devices: int) -> float:
    started = time.monotonic()
    while time.monotonic() - started < START_TIMEOUT_S:
        if process.poll() is not None:
            raise SystemExit(f"gateway-console exited with {process.returncode}")
        try:
            _status, body = _get(base + "/parts/devices")
        except OSError:
            body = b""
        if f"{devices} devices".encode() in body and b"none in the last 24 h" not in body:
            return time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit("no snapshot within a minute")


def _measure(base: str, paths: dict[str, str], rounds: int) -> None:
    print(f"{'page':<28} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'KB':>6}")
    for name, path in paths.items():
        times, size = [], 0
        for _ in range(rounds):
            begin = time.perf_counter()
            status, body = _get(base + path)
            times.append((time.perf_counter() - begin) * 1000)
            size = len(body)
            if status != 200:
                raise SystemExit(f"{path}: HTTP {status}")
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        median = statistics.median(times)
        print(f"{name:<28} {median:>10.1f} {p95:>8.1f} {times[-1]:>8.1f} {size / 1024:>6.0f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gateway_devkit.bench.console", description=__doc__
    )
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    redis_url = os.environ.get("GATEWAY_REDIS_URL", "redis://127.0.0.1:6379/0")
    keys = StreamKeys(f"bench-console-{uuid.uuid4().hex[:8]}")
    client = connect(redis_url)
    log = Path(tempfile.mkdtemp(prefix="console-bench-")) / "console.log"
    process = None
    try:
        began = time.monotonic()
        seed(client, keys, args.devices, time.time())
        print(f"seeded {args.devices} devices, {client.xlen(keys.frames)} frames, "
              f"{client.xlen(keys.records)} records under {keys.prefix}: "
              f"in {time.monotonic() - began:.1f} s")  # fmt: skip
        port = free_port()
        process = _start_console(redis_url, keys.prefix, port, log)
        base = f"http://127.0.0.1:{port}"
        print(f"first snapshot after {_wait_for_snapshot(base, process, args.devices):.1f} s")
        memory = _memory_mb(process.pid)
        print(f"console memory before the pages: VmRSS {memory['VmRSS']:.1f} MB")
        device = "B57" + f"{2:010X}"
        _measure(
            base,
            {
                "overview /": "/",
                "devices /devices": "/devices",
                "devices sorted by silence": "/devices?sort=last_seen&order=desc",
                "device page": f"/devices/{device}",
                "device plots (24 h)": f"/parts/devices/{device}/plots?hours=24",
                "device plots (72 h)": f"/parts/devices/{device}/plots?hours=72",
                "device plots (168 h)": f"/parts/devices/{device}/plots?hours=168",
                "dead letters /dead": "/dead",
            },
            args.rounds,
        )
        memory = _memory_mb(process.pid)
        print(
            f"console memory: VmRSS {memory['VmRSS']:.1f} MB, peak VmHWM {memory['VmHWM']:.1f} MB"
        )
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        names = list(client.scan_iter(match=f"{keys.prefix}:*"))
        if names:
            client.delete(*names)
        client.close()


if __name__ == "__main__":
    main()
