"""Soak: the whole gateway for a long run, with retention trimming at short retentions.

The simulator (gateway-sim, 1,000 sensors) plays the modem; ingest reads it, the decoders and
the publisher carry every frame on to a private Mosquitto, where `mosquitto_sub` counts the
DDATA; the streams live in a private Redis (AOF, fsync always, as on the Pi). The decoder trims
`{p}:frames` and the publisher `{p}:records` to a retention of seconds, so Redis's memory must
level off. Every few seconds the test samples, from outside: the frames accepted and the
records written (Redis's own counts), the DDATA received, Redis's `used_memory` and the
streams' lengths, and each process's VmRSS and CPU seconds (/proc). A tally thread reads every
frame and record back before retention trims it.

Checked at the end:
- nothing lost or repeated: the simulator's frames sent == frames accepted + its REBOOTED,
  the simulator lost none, ingest saw no counter gap; every accepted frame became exactly one
  record (no dead letter); every energy or button record became one DDATA, published
  (the publisher's counter) and received (per device); nothing pending in either group;
- after the warm-up (the first 10 % of the frames), no service's VmRSS grew by more than 10 %;
- Redis's memory stayed within what the retention allows (analysis.RedisBound);
- no service crashed or logged a traceback, every one stops cleanly on SIGTERM.

The samples are written as `soak.csv`, the plot as `soak.png` and the summary (CPU seconds per
1,000 frames per process, the RSS growth, the Redis bound) as `soak.json` / `soak.txt` in
GATEWAY_SOAK_OUT (default: the test's temporary directory, printed).

Scales (tests/seeds.py): 20,000 frames in `make test`, 1,000,000 in `make chaos` (about 15 min
at the default rate); GATEWAY_SOAK_FRAMES overrides the count, GATEWAY_SOAK_INTERVAL_S the
sensors' reporting interval (1,000 sensors: about 1,100 frames/s at 1 s, with the button
presses), GATEWAY_SOAK_RETENTION_S the retention of both streams (5 s short, 60 s full).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gateway_common.streams import DECODER_GROUP, PUBLISHER_GROUP, StreamKeys
from gateway_devkit.bench.harness import log_value
from gateway_devkit.processes import Supervisor
from gateway_devkit.scrape import scrape
from gateway_devkit.servers import free_port
from gateway_devkit.soak.analysis import cpu_per_kframe, redis_bound, rss_growth, warmup_index
from gateway_devkit.soak.plot import plot_samples
from gateway_devkit.soak.report import summary_text, write_csv, write_summary
from gateway_devkit.soak.samples import Sampler, group_backlog, stream_count
from gateway_devkit.soak.subscriber import CountingSubscriber
from gateway_devkit.soak.tally import PUBLISHED_KINDS, StreamTally

from .delivery import check_clean_exit, pipeline_env
from .seeds import choose_seed, full_scale, scaled

if TYPE_CHECKING:
    from gateway_devkit.servers import PrivateBroker, PrivateRedis

FRAMES = int(os.environ.get("GATEWAY_SOAK_FRAMES") or scaled(20_000, 1_000_000))
SENSORS = 1000
INTERVAL_S = float(os.environ.get("GATEWAY_SOAK_INTERVAL_S") or 1.0)
EXPECTED_S = FRAMES / (SENSORS / INTERVAL_S * 1.1)
"""How long the flow should take: each sensor reports once an interval, and one report in ten
comes with a button press and release (GATEWAY_SIM_BUTTON_PROBABILITY 0.05)."""
RETENTION_S = float(os.environ.get("GATEWAY_SOAK_RETENTION_S") or scaled(5, 60))
TRIM_INTERVAL_S = max(1.0, RETENTION_S / 6)
SAMPLE_S = scaled(1, 5)
WARMUP = 0.10
"""The warm-up: the first tenth of the frames."""
RSS_GROWTH = 0.10
DECODERS = ("decoder-1", "decoder-2")
SERVICES = ("ingest", *DECODERS, "publisher")
PREFIX = "soak"
TOPIC_ROOT = "soak"
DRAIN_TIMEOUT_S = 120.0
HARNESS = "soak (this test)"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.system,
    pytest.mark.chaos,
    pytest.mark.timeout(max(120, round(2 * EXPECTED_S + DRAIN_TIMEOUT_S + 120))),
]
"""This process: its CPU and memory are sampled too (the CSV), but not plotted."""


# redis_server (AOF, fsync always, as on the Pi), mosquitto (no limit on the QoS 1 messages
# queued for the subscriber: a moment's lag loses nothing), supervisor: conftest


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("GATEWAY_SOAK_OUT") or tmp_path / "soak")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def services(
    redis_server: PrivateRedis, mosquitto: PrivateBroker, supervisor: Supervisor
) -> Supervisor:
    supervisor.env = pipeline_env(
        redis_url=redis_server.url,
        mqtt_port=mosquitto.port,
        line=None,  # the simulator's TCP link, given to ingest when it starts
        prefix=PREFIX,
        topic_root=TOPIC_ROOT,
        FRAMES_RETENTION_S=str(RETENTION_S),
        RECORDS_RETENTION_S=str(RETENTION_S),
        TRIM_INTERVAL_S=str(TRIM_INTERVAL_S),
    )
    return supervisor


def metric(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    """The sum of a metric's samples over their labels (0 when absent)."""
    return sum(v for (n, _labels), v in samples.items() if n == name)


def test_soak_keeps_memory_bounded_and_loses_nothing(
    redis_server: PrivateRedis,
    mosquitto: PrivateBroker,
    services: Supervisor,
    out_dir: Path,
) -> None:
    seed = choose_seed("GATEWAY_CHAOS_SEED")
    keys = StreamKeys(PREFIX)
    client = redis_server.client()
    ports = {name: free_port() for name in SERVICES}
    print(
        f"\nsoak: {FRAMES} frames from {SENSORS} sensors every {INTERVAL_S} s, retention "
        f"{RETENTION_S} s trimmed every {TRIM_INTERVAL_S} s, seed {seed}; out: {out_dir}"
    )

    # ---- the gateway: subscriber first, then decoders and publisher, then the modem and ingest
    subscriber = CountingSubscriber(services, mosquitto.port, TOPIC_ROOT, "subscriber")
    subscriber.wait_subscribed()
    for name in DECODERS:
        services.start_service(
            name,
            "gateway-decoder",
            GATEWAY_CONSUMER_NAME=f"soak-{name}",
            GATEWAY_METRICS_PORT=str(ports[name]),
        )
    services.start_service(
        "publisher",
        "gateway-publisher",
        GATEWAY_CONSUMER_NAME="publisher",
        GATEWAY_METRICS_PORT=str(ports["publisher"]),
    )
    for name in DECODERS:
        services.wait_log(name, "decoder_started")
    services.wait_log("publisher", "mqtt_connected")
    # A TCP link that boots the modem when ingest connects and delivers every byte before it
    # closes: the simulator's count of frames sent is then exactly what reached ingest (a pty
    # drops what it holds when its writer exits, and fills while ingest starts).
    simulator = services.start_service(
        "simulator",
        "gateway-sim",
        GATEWAY_SIM_LISTEN="tcp://127.0.0.1:0",
        GATEWAY_SIM_WAIT_FOR_CLIENT="true",
        GATEWAY_SIM_SENSORS=str(SENSORS),
        GATEWAY_SIM_INTERVAL_S=str(INTERVAL_S),
        GATEWAY_SIM_FRAMES=str(FRAMES),
        GATEWAY_SIM_SEED=str(seed % 2**31),
    )
    services.wait_log(simulator, "listening: ")
    url = simulator.log().split("listening: ", 1)[1].split()[0]

    tally = StreamTally(redis_server.client(), keys.frames, keys.records)
    tally.start()
    # ingest (sampled first in the listings) comes last: the first sample, before any frame, is
    # the empty gateway's
    processes = {"ingest": 0} | {n: services.current(n).pid for n in (*DECODERS, "publisher")}
    processes |= {"simulator": simulator.pid, "subscriber": subscriber.child.pid}
    processes |= {"redis-server": redis_server.pid, "mosquitto": mosquitto.pid}
    processes[HARNESS] = os.getpid()
    sampler = Sampler(
        redis_server.client(),
        (keys.frames, keys.records, keys.dead),
        (DECODER_GROUP, PUBLISHER_GROUP),
        {name: pid for name, pid in processes.items() if pid},
        subscriber.count,
        interval_s=SAMPLE_S,
    )
    sampler.start()
    ingest = services.start_service(
        "ingest",
        "gateway-ingest",
        GATEWAY_SERIAL_PORT=url,
        GATEWAY_METRICS_PORT=str(ports["ingest"]),
    )
    processes["ingest"] = ingest.pid
    sampler.watch("ingest", ingest.pid)
    services.wait_log(ingest, "serial_opened")

    # ---- the flow: until the simulator has sent its frames and stopped
    deadline = time.monotonic() + 2 * EXPECTED_S + 60
    while simulator.alive():
        assert time.monotonic() < deadline, f"the simulator did not finish\n{services.logs()}"
        assert not services.newly_exited(), f"a service exited\n{services.logs()}"
        time.sleep(0.5)
    assert simulator.process.returncode == 0, simulator.tail()
    simulator.stopped = True  # it stops by itself after GATEWAY_SIM_FRAMES
    sampler.take()
    flow_end = len(sampler.snapshot()) - 1
    sent = int(log_value(simulator, "simulation_stopped", "sent"))
    lost = int(log_value(simulator, "simulation_stopped", "lost"))

    # ---- the drain: every frame sent accepted, both groups empty, every DDATA received
    drain_started = time.monotonic()
    while True:
        frames = stream_count(client, keys.frames).added
        _frames_read, _records_read, ddata_expected = tally.counts()
        done = (
            frames == sent - 1  # the modem's REBOOTED is not an ALP frame
            and group_backlog(client, keys.frames, DECODER_GROUP) == 0
            and group_backlog(client, keys.records, PUBLISHER_GROUP) == 0
            and subscriber.count() >= ddata_expected
            and tally.counts()[:2] == (frames, stream_count(client, keys.records).added)
        )
        if done:
            break
        assert time.monotonic() - drain_started < DRAIN_TIMEOUT_S, (
            f"not drained after {DRAIN_TIMEOUT_S} s: {frames} of {sent - 1} frames accepted, "
            f"backlog decoder {group_backlog(client, keys.frames, DECODER_GROUP)}, publisher "
            f"{group_backlog(client, keys.records, PUBLISHER_GROUP)}, {subscriber.count()} of "
            f"{ddata_expected} DDATA\n{services.logs()}"
        )
        time.sleep(0.5)
    drain_s = time.monotonic() - drain_started
    time.sleep(1.0)  # a late duplicate would arrive now
    samples = sampler.stop()
    tally.stop()
    scraped = {name: scrape(ports[name]) for name in SERVICES}

    # ---- the report, whatever the verdict
    warmup = warmup_index(samples, round(WARMUP * FRAMES))
    grown = rss_growth(samples, warmup)
    growth = {name: grown[name] for name in processes if name in grown}  # in this order
    cpu = cpu_per_kframe(samples, warmup)
    bound = redis_bound(
        samples,
        retentions_s=(RETENTION_S, RETENTION_S),
        trim_interval_s=TRIM_INTERVAL_S,
        flow_end=flow_end,
    )
    flow_s = samples[flow_end].t_s
    machine_busy = samples[flow_end].machine_busy_s - samples[0].machine_busy_s
    sampled_busy = 0.0
    for name in processes:
        used = [s.cpu_s[name] for s in samples[: flow_end + 1] if name in s.cpu_s]
        sampled_busy += used[-1] - used[0] if used else 0.0
    facts: dict[str, Any] = {
        "frames_requested": FRAMES,
        "sensors": SENSORS,
        "interval_s": INTERVAL_S,
        "retention_s": RETENTION_S,
        "trim_interval_s": TRIM_INTERVAL_S,
        "sample_interval_s": SAMPLE_S,
        "scale": "full" if full_scale() else "short",
        "seed": seed,
        "simulator_sent": sent,
        "simulator_lost": lost,
        "frames_accepted": samples[-1].frames,
        "records": samples[-1].records,
        "record_kinds": dict(tally.kinds),
        "ddata_received": samples[-1].ddata,
        "flow_s": flow_s,
        "mean_rate_frames_per_s": round(samples[flow_end].frames / flow_s, 1),
        "drain_after_flow_s": round(drain_s, 1),
        "warmup_frames": samples[warmup].frames,
        "redis_aof_peak_mb": round(max(s.redis_aof_bytes for s in samples) / 2**20, 1),
        "cpu_count": os.cpu_count(),
        "machine_busy_during_flow": f"{100 * machine_busy / flow_s:.0f} % of one core",
        "processes_sampled_during_flow": f"{100 * sampled_busy / flow_s:.0f} % of one core",
    }
    names = list(processes)
    write_csv(samples, names, out_dir / "soak.csv")
    write_summary(out_dir / "soak.json", growth, cpu, bound, facts)
    plot_samples(
        samples,
        [name for name in names if name != HARNESS],
        bound,
        samples[warmup].frames,
        path=out_dir / "soak.png",
        title=f"Soak: {samples[-1].frames:,} frames, {SENSORS} sensors, "
        f"retention {RETENTION_S:g} s",
    )
    print(summary_text(growth, cpu, bound, facts))

    # ---- no crash, clean stops, no traceback (in any process, the simulator's included)
    check_clean_exit(services, list(SERVICES), f"[soak seed {seed}]")

    # ---- nothing lost: simulator -> ingest -> records -> DDATA published -> received
    assert lost == 0, f"the simulator lost {lost} frames on its link"
    accepted = samples[-1].frames
    assert accepted == sent - 1, f"{sent} frames sent (1 REBOOTED), {accepted} accepted"
    ingest_metrics = scraped["ingest"]
    assert metric(ingest_metrics, "gateway_ingest_frames_written_total") == accepted
    assert metric(ingest_metrics, "gateway_modem_missed_frames_total") == 0
    assert metric(ingest_metrics, "gateway_serial_errors_total") == 0
    assert len(tally.frame_ids) == accepted, "the tally missed frames"
    assert tally.records == len(tally.record_frame_ids), (
        f"{tally.records - len(tally.record_frame_ids)} frames became two records"
    )
    assert tally.record_frame_ids == tally.frame_ids, "records != accepted frames"
    assert samples[-1].records == accepted
    assert samples[-1].dead == 0, "dead letters"
    for stream, group in ((keys.frames, DECODER_GROUP), (keys.records, PUBLISHER_GROUP)):
        summary: Any = client.xpending(stream, group)
        assert summary["pending"] == 0, f"{group}: {summary}"
    ddata = sum(tally.kinds[kind] for kind in PUBLISHED_KINDS)
    published = metric(scraped["publisher"], "gateway_records_published_total")
    assert published == ddata, f"{published} published, {ddata} energy and button records"
    assert subscriber.count() == ddata
    assert subscriber.per_device() == tally.ddata_per_device
    subscriber.stop()

    # ---- memory: services flat after the warm-up, Redis within what retention allows
    grew = {
        name: f"{100 * g.ratio:.1f} %"
        for name, g in growth.items()
        if name in SERVICES and g.ratio > RSS_GROWTH
    }
    assert not grew, f"VmRSS grew after the warm-up by more than {RSS_GROWTH:.0%}: {grew}"
    assert bound.held, f"Redis memory beyond what retention allows: {bound.as_json()}"
    if full_scale():  # the rate is meant to be one the pipeline keeps up with
        assert bound.peak_backlog < bound.rate_per_s * RETENTION_S, (
            f"the pipeline fell behind by up to {bound.peak_backlog} entries: a quieter machine "
            "or a longer GATEWAY_SOAK_INTERVAL_S"
        )
    client.close()
