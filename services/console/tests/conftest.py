"""Fixtures of the console's tests: the console as a real process on a test's own stream prefix,
and a gateway's Redis state written the way the decoder and the publisher write it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest
import redis

from gateway_common.devices import DeviceEntry
from gateway_common.entries import DeadLetter, Record, encode
from gateway_common.streams import ENTRY_FIELD, StreamKeys
from gateway_devkit.polling import wait_until
from gateway_devkit.processes import stop_process
from gateway_devkit.servers import free_port

BIN = Path(sys.executable).parent
PASSWORD = "field-test-password"
START_TIMEOUT_S = 20.0


@dataclass
class Console:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    auth: str | None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get(
        self, path: str, *, method: str = "GET", auth: str | None = "default"
    ) -> tuple[int, Message, str]:
        """(status, headers, body) of one request; `auth` None sends no credentials."""
        request = urllib.request.Request(self.url + path, method=method)  # noqa: S310  (http)
        credentials = self.auth if auth == "default" else auth
        if credentials is not None:
            request.add_header("Authorization", "Basic " + b64encode(credentials.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                return answer.status, answer.headers, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read().decode()


@pytest.fixture
def start_console(tmp_path, redis_url, stream_prefix) -> Iterator[Callable[..., Console]]:
    """Start `gateway-console` on this test's prefix (password auth unless auth="off")."""
    started: list[Console] = []

    def start(*, auth: str = "on", **extra_env: str) -> Console:
        port = free_port()
        password_file = tmp_path / "console_password"
        password_file.write_text(PASSWORD + "\n", encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            GATEWAY_REDIS_URL=redis_url,
            GATEWAY_STREAM_PREFIX=stream_prefix,
            GATEWAY_CONSOLE_HOST="127.0.0.1",
            GATEWAY_CONSOLE_PORT=str(port),
            GATEWAY_CONSOLE_AUTH=auth,
            GATEWAY_CONSOLE_REFRESH_S="0.5",
            GATEWAY_HEALTH_FILE=str(tmp_path / f"console-{port}-health.json"),
            GATEWAY_LOG_FORMAT="json",
        )
        if auth == "on":
            env["GATEWAY_CONSOLE_PASSWORD_FILE"] = str(password_file)
        env.update(extra_env)
        log_path = tmp_path / f"console-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(BIN / "gateway-console")], env=env, stdout=log, stderr=log
            )
        console = Console(
            f"http://127.0.0.1:{port}",
            process,
            log_path,
            f"admin:{PASSWORD}" if auth == "on" else None,
        )
        started.append(console)
        ready = wait_until(lambda: process.poll() is not None or _answers(console), START_TIMEOUT_S)
        assert ready, console.log()
        assert process.poll() is None, console.log()
        return console

    yield start
    for console in started:
        stop_process(console.process)


def _answers(console: Console) -> bool:
    try:
        status, _headers, body = console.get("/parts/overview")
    except OSError:
        return False
    return status == 200 and "Reading the gateway" not in body


# ---------------------------------------------------------------- a gateway's state in Redis


def energy_record(
    device_id: str,
    at: float,
    *,
    voltage: tuple[int, int, int] = (230, 231, 229),
    energy_wh: tuple[int, int, int] = (1000, 2000, 3000),
    valid: bool = True,
    link_budget: int = 70,
) -> Record:
    fields: dict[str, int | bool | list[int]] = {
        "apparent_energy_vah": [v + 100 for v in energy_wh],
        "active_energy_wh": list(energy_wh),
        "current_ma": [1500, 2500, 3500],
        "voltage_v": list(voltage),
        "measurement_valid": valid,
    }
    return Record(device_id, "energy", fields, link_budget, link_budget - 14, at, "1-0")


def add_records(client: redis.Redis, keys: StreamKeys, *records: Record) -> None:
    for record in records:
        client.xadd(keys.records, {ENTRY_FIELD: encode(record)})


def register(
    client: redis.Redis,
    keys: StreamKeys,
    device_id: str,
    *,
    last_seen: float,
    link_budget: int = 70,
    readings: int = 1,
    interval_s: float | None = 600.0,
) -> None:
    """The publisher's registry entry of a device."""
    entry = DeviceEntry(last_seen - 3600, last_seen, readings, link_budget, interval_s)
    client.hset(keys.devices, device_id, entry.to_bytes())


def add_dead_letter(client: redis.Redis, keys: StreamKeys, reason: str, raw: bytes) -> None:
    letter = DeadLetter(reason, "decoder", keys.frames, "1-0", raw, time.time(), time.time())
    client.xadd(keys.dead, {ENTRY_FIELD: encode(letter)})
