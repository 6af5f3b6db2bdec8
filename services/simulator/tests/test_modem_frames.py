"""Frames the simulated modem emits parse back with an independent minimal reader."""

from __future__ import annotations

import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_common.lifecycle import StopSignal
from gateway_dash7 import MessageType, crc16
from gateway_simulator.modem import Modem
from gateway_simulator.sensors import Behaviour, make_sensors
from gateway_simulator.simulation import run
from gateway_simulator.timeline import Timeline


def read_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """(counter, type, payload) of each frame; fails on anything but back-to-back valid frames."""
    frames = []
    pos = 0
    while pos < len(data):
        assert data[pos : pos + 2] == b"\xc0\x00", f"no sync at {pos}"
        counter, kind, length, crc = struct.unpack_from(">BBBH", data, pos + 2)
        payload = data[pos + 7 : pos + 7 + length]
        assert len(payload) == length, "truncated frame"
        assert crc16(payload) == crc, "bad CRC"
        frames.append((counter, kind, payload))
        pos += 7 + length
    return frames


class ListTransport:
    url = "memory"

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> bool:
        self.chunks.append(data)
        return True

    def close(self) -> None:
        pass


def test_first_frame_is_rebooted_power_on_with_counter_1() -> None:
    modem = Modem()
    assert read_frames(modem.boot()) == [(1, MessageType.REBOOTED, b"\x00")]
    assert modem.boot() == bytes.fromhex("C0 00 01 05 01 E1 F0 00")  # the test vector


def test_counter_wraps_from_255_to_0_and_reboot_restarts_it() -> None:
    modem = Modem()
    stream = modem.boot() + b"".join(modem.alp_data(b"\x01") for _ in range(300))
    counters = [counter for counter, _, _ in read_frames(stream)]
    assert counters[:3] == [1, 2, 3]
    assert counters[254:258] == [255, 0, 1, 2]
    assert counters == [(i + 1) % 256 for i in range(301)]
    assert read_frames(modem.boot())[0][0] == 1


@given(st.binary(max_size=255))
def test_any_alp_payload_round_trips(payload: bytes) -> None:
    modem = Modem()
    assert read_frames(modem.alp_data(payload)) == [(1, MessageType.ALP_DATA, payload)]


def test_log_line_is_a_logging_frame() -> None:
    assert read_frames(Modem().log_line("hello")) == [(1, MessageType.LOGGING, b"hello")]


def test_run_sends_rebooted_then_sensor_messages_with_consecutive_counters() -> None:
    sensors = make_sensors(3, seed=5, behaviour=Behaviour(interval_s=0.02))
    transport = ListTransport()
    stats = run(Modem(), Timeline(sensors, 0.02, random.Random(5)), transport, StopSignal(), 40)
    frames = read_frames(b"".join(transport.chunks))
    assert stats.frames_sent == len(frames) == 40
    assert frames[0] == (1, MessageType.REBOOTED, b"\x00")
    assert [c for c, _, _ in frames] == list(range(1, 41))
    assert {kind for _, kind, _ in frames[1:]} == {MessageType.ALP_DATA}
    uids = {payload[-8:] for _, _, payload in frames[1:]}
    assert uids == {sensor.uid for sensor in sensors}


def test_run_stops_promptly_when_stop_is_set() -> None:
    sensors = make_sensors(1, seed=1, behaviour=Behaviour(interval_s=600))
    stop = StopSignal()
    stop.set("test")
    started = time.monotonic()
    stats = run(Modem(), Timeline(sensors, 600, random.Random(1)), ListTransport(), stop)
    assert time.monotonic() - started < 1
    assert stats.frames == 1  # only REBOOTED


class LossyTransport(ListTransport):
    def write(self, data: bytes) -> bool:
        super().write(data)
        return len(self.chunks) % 2 == 0


def test_lost_frames_still_advance_the_counter() -> None:
    sensors = make_sensors(2, seed=1, behaviour=Behaviour(interval_s=0.01))
    transport = LossyTransport()
    stats = run(Modem(), Timeline(sensors, 0.01, random.Random(1)), transport, StopSignal(), 10)
    assert (stats.frames_sent, stats.frames_lost) == (5, 5)
    delivered = [
        c for i, chunk in enumerate(transport.chunks) if i % 2 for c, _, _ in read_frames(chunk)
    ]
    assert delivered == [2, 4, 6, 8, 10]


@pytest.mark.integration
def test_gateway_sim_over_tcp_end_to_end() -> None:
    """The console script: prints its URL, boots when a client connects, stops after N frames."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from gateway_simulator.main import main; main()",
            "--listen=tcp://127.0.0.1:0",
            "--wait-for-client",
            "--frames=12",
            "--interval-s=0.05",
            "--sensors=2",
            "--seed=3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening: socket://127.0.0.1:")
        port = int(line.rpartition(":")[2])
        received = b""
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            while chunk := client.recv(65536):
                received += chunk
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
        proc.wait()
    frames = read_frames(received)
    assert [c for c, _, _ in frames] == list(range(1, 13))
    assert frames[0][1] == MessageType.REBOOTED
    file_ids = [payload[1] for _, kind, payload in frames if kind == MessageType.ALP_DATA]
    assert file_ids[:1] == [62]  # each sensor starts with its EnergyConfigFile
    assert 52 in file_ids


def test_gateway_sim_on_a_pty_until_sigterm() -> None:
    """`pty: PATH` on stdout; frames readable there; SIGTERM stops it cleanly."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from gateway_simulator.main import main; main()",
            "--interval-s=0.05",
            "--sensors=3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "GATEWAY_SIM_LISTEN": "pty"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("pty: /dev/")
        reader = os.open(line.removeprefix("pty: "), os.O_RDONLY | os.O_NOCTTY)
        received = b""
        deadline = time.monotonic() + 5
        try:
            while received.count(b"\xc0\x00") < 10 and time.monotonic() < deadline:
                if select.select([reader], [], [], 0.5)[0]:
                    received += os.read(reader, 4096)
        finally:
            os.close(reader)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
        proc.wait()
    complete = received[: received.rfind(b"\xc0\x00")]
    frames = read_frames(complete)
    assert len(frames) >= 9
    assert frames[0] == (1, MessageType.REBOOTED, b"\x00")
    assert [c for c, _, _ in frames] == list(range(1, len(frames) + 1))
