"""The field console's screenshots in docs/, taken from the demo gateway with a day of history.

Uses the Redis and the MQTT broker on 127.0.0.1 (6379, 1883). Under a scratch stream prefix it
writes a day of frames of 8 simulated sensors (gateway-sim's sensors, one EnergyFile every
10 minutes; one sensor silent from 8 to 5 hours ago, one silent for the last two hours) into
`{p}:frames` with their receive times, as ingest would have; the real decoder and publisher
turn them into records and the device registry. Then ingest reads live frames of the
same sensors from a pty, one of them an unknown file (a dead letter), and the console runs on it
all; headless Chromium (Debian's, via Selenium and chromedriver) takes the pictures. Everything
started is stopped, the keys are deleted and the retained DBIRTHs cleared.

    .venv/bin/python tests/console_screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from gateway_common.entries import FrameEntry, encode
from gateway_common.streams import ENTRY_FIELD, StreamKeys
from gateway_dash7 import D7Status, MessageType, encode_frame, encode_unsolicited
from gateway_simulator.sensors import Behaviour, Sensor, make_sensors

if TYPE_CHECKING:
    from collections.abc import Iterator

BIN = Path(sys.executable).parent
REDIS_URL = "redis://127.0.0.1:6379/0"
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883
INTERVAL_S = 600
DAY_S = 86_400
SENSORS = 8
GAP = (3, 5 * 3600, 8 * 3600)  # sensor 3: silent from 8 h to 5 h ago
SILENT = (5, 2 * 3600)  # sensor 5: silent for the last two hours (stale)
LIVE_S = 40.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def history(sensors: list[Sensor], now: float) -> Iterator[tuple[float, bytes]]:
    """(receive time, ALP) of a day of reports, oldest first."""
    events: list[tuple[float, int]] = []
    for index in range(len(sensors)):
        offset = index * INTERVAL_S / len(sensors)
        for step in range(DAY_S // INTERVAL_S):
            at = now - DAY_S + offset + step * INTERVAL_S
            age = now - at
            gap = index == GAP[0] and GAP[1] <= age <= GAP[2]
            if at < now - 60 and not gap and not (index == SILENT[0] and age < SILENT[1]):
                events.append((at, index))
    for index, sensor in enumerate(sensors):
        yield now - DAY_S - 60 + index, sensor.config_report()
    for at, index in sorted(events):
        yield at, sensors[index].energy_report()


def start(name: str, env: dict[str, str], log_dir: Path) -> subprocess.Popen[bytes]:
    with (log_dir / f"{name}.log").open("wb") as log:
        return subprocess.Popen([str(BIN / name)], env=env, stdout=log, stderr=log)


def wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise SystemExit(f"not within {timeout_s} s: {what}")


def browser(profile: Path) -> webdriver.Chrome:
    os.environ["SE_OFFLINE"] = "true"
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(
        service=Service(executable_path="/usr/bin/chromedriver"), options=options
    )


def shoot(driver: webdriver.Chrome, url: str, path: Path, height: int) -> None:
    driver.set_window_size(1280, height)
    driver.get(url)
    time.sleep(5)  # the live parts (plots included) fetched at least once
    if not driver.save_screenshot(str(path)):
        raise SystemExit(f"could not write {path}")
    print(f"wrote {path}")


def clear_births(prefix: str) -> None:
    """Empty the retained DBIRTHs the publisher left under this run's topic root."""
    topics: list[str] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, msg: topics.append(msg.topic) if msg.retain else None
    client.connect(MQTT_HOST, MQTT_PORT)
    client.loop_start()
    client.subscribe(f"{prefix}/#")
    time.sleep(1.0)
    for topic in topics:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"shots-{os.getpid()}"
    keys = StreamKeys(prefix)
    client = redis.Redis.from_url(REDIS_URL)
    log_dir = Path(tempfile.mkdtemp(prefix="console-shots-"))
    sensors = make_sensors(SENSORS, 7, Behaviour(INTERVAL_S, invalid_probability=0.02))
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for counter, (at, alp) in enumerate(history(sensors, now)):
        frame = encode(FrameEntry(alp, at, counter % 256))
        pipe.xadd(
            keys.frames, {ENTRY_FIELD: frame}, id=f"{int(at * 1000)}-{counter}"
        )  # as ingest's
    pipe.execute()
    frames = int(client.xlen(keys.frames))
    metrics = {
        name: free_port() for name in ("gateway-ingest", "gateway-decoder", "gateway-publisher")
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    base.update(
        GATEWAY_REDIS_URL=REDIS_URL, GATEWAY_STREAM_PREFIX=prefix, GATEWAY_LOG_FORMAT="json"
    )
    master, slave = os.openpty()
    tty.setraw(slave)
    extra = {
        "gateway-ingest": {"GATEWAY_SERIAL_PORT": os.ttyname(slave)},
        "gateway-decoder": {"GATEWAY_CONSUMER_NAME": "decoder-1"},
        "gateway-publisher": {
            "GATEWAY_MQTT_HOST": MQTT_HOST, "GATEWAY_MQTT_PORT": str(MQTT_PORT),
            "GATEWAY_MQTT_TLS": "false", "GATEWAY_PROJECT_ID": "demo-project",
            "GATEWAY_EDGE_NODE_ID": "demo-edge", "GATEWAY_TOPIC_ROOT": prefix,
            "GATEWAY_MQTT_CLIENT_ID": prefix,
        },
    }  # fmt: skip
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, settings in extra.items():
            env = {**base, **settings, "GATEWAY_METRICS_PORT": str(metrics[name])}
            env["GATEWAY_HEALTH_FILE"] = str(log_dir / f"{name}.health")
            processes.append(start(name, env, log_dir))
        wait(lambda: int(client.xlen(keys.records)) >= frames, 120, "the day decoded")
        wait(lambda: int(client.hlen(keys.devices)) == SENSORS, 60, "the registry")
        port = free_port()
        urls = ",".join(
            f"{n.removeprefix('gateway-')}=http://127.0.0.1:{p}/healthz" for n, p in metrics.items()
        )
        console_env = {
            **base, "GATEWAY_CONSOLE_AUTH": "off", "GATEWAY_CONSOLE_HOST": "127.0.0.1",
            "GATEWAY_CONSOLE_PORT": str(port), "GATEWAY_CONSOLE_REFRESH_S": "2",
            "GATEWAY_CONSOLE_HEALTH_URLS": urls,
            "GATEWAY_HEALTH_FILE": str(log_dir / "console.health"),
        }  # fmt: skip
        processes.append(start("gateway-console", console_env, log_dir))
        # live frames through the serial line: the sensors that still report, and a dead letter
        counter = frames
        talking = [s for i, s in enumerate(sensors) if i != SILENT[0]]
        unknown = encode_unsolicited(64, b"\x01\x02\x03\x04", D7Status(address=sensors[0].uid))
        started = time.monotonic()
        turn = 0
        while time.monotonic() - started < LIVE_S:
            alp = unknown if turn == 4 else talking[turn % len(talking)].energy_report()
            os.write(master, encode_frame(counter % 256, MessageType.ALP_DATA, alp))
            counter, turn = counter + 1, turn + 1
            time.sleep(2.5)
        driver = browser(log_dir / "chromium")
        try:
            url = f"http://127.0.0.1:{port}"
            shoot(driver, url + "/", out / "console-overview.png", 1100)
            shoot(driver, url + "/devices", out / "console-devices.png", 900)
            device = sensors[GAP[0]].device_id
            shoot(driver, f"{url}/devices/{device}", out / "console-device.png", 1900)
        finally:
            driver.quit()
    finally:
        for process in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            process.wait(15)
        os.close(master)
        os.close(slave)
        names = list(client.scan_iter(match=f"{prefix}:*"))
        if names:
            client.delete(*names)
        client.close()
        clear_births(prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    run(parser.parse_args().out)


if __name__ == "__main__":
    main()
