"""Fixtures of the console's tests: the console as a real process on a test's own stream prefix,
and a gateway's Redis state written the way ingest, the decoder and the publisher write it."""

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
from gateway_common.entries import DeadLetter, FrameEntry, Record, encode
from gateway_common.streams import ENTRY_FIELD, StreamKeys
from gateway_dash7 import AddressType, D7Status, EnergyFile, encode_unsolicited
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


def _phases(value: object) -> tuple[int, int, int]:
    assert isinstance(value, list)
    first, second, third = value
    return (int(first), int(second), int(third))


def energy_frame(record: Record, counter: int = 0) -> FrameEntry:
    """The frame ingest archived for an energy record: the EnergyFile as the sensor sends it,
    from a UID (8-byte) address, or a VID (2-byte) one when the device id fits in 2 bytes."""
    value = int(record.device_id, 16)
    vid = value <= 0xFFFF
    status = D7Status(
        address=value.to_bytes(2 if vid else 8, "big"),
        address_type=AddressType.VID if vid else AddressType.UID,
        rx_level=record.rx_level,
        link_budget=record.link_budget,
    )
    fields = record.fields
    file = EnergyFile(
        apparent_energy_vah=_phases(fields["apparent_energy_vah"]),
        active_energy_wh=_phases(fields["active_energy_wh"]),
        current_ma=_phases(fields["current_ma"]),
        voltage_v=_phases(fields["voltage_v"]),
        measurement_valid=fields["measurement_valid"] is True,
    )
    alp = encode_unsolicited(file.file_id, file.encode(), status)
    return FrameEntry(alp=alp, received_at=record.received_at, counter=counter % 256)


def add_frames(client: redis.Redis, keys: StreamKeys, *records: Record) -> None:
    """The frames of energy records in `{p}:frames`, each under an entry id of its receive time
    (as ingest's XADD gives it), oldest first and never before an entry already there."""
    last = client.xrevrange(keys.frames, count=1)
    floor = int(last[0][0].split(b"-")[0]) if last else 0
    for counter, record in enumerate(sorted(records, key=lambda r: r.received_at)):
        floor = max(floor, int(record.received_at * 1000))
        entry = encode(energy_frame(record, counter))
        client.xadd(keys.frames, {ENTRY_FIELD: entry}, id=f"{floor}-*")


def add_readings(client: redis.Redis, keys: StreamKeys, *records: Record) -> None:
    """Readings as the gateway leaves them: the frames (the plots' source) and the records (the
    readings index's)."""
    add_frames(client, keys, *records)
    add_records(client, keys, *records)


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
