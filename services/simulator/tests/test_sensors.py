from __future__ import annotations

import itertools
import random
import struct
import subprocess
import sys

from gateway_dash7 import BUTTON_FILE_ID, ENERGY_CONFIG_FILE_ID, ENERGY_FILE_ID
from gateway_simulator.sensors import UID_OUI, Behaviour, make_sensors, sensor_uid
from gateway_simulator.timeline import EventKind, Timeline

ENERGY_HEADER = bytes((0x20, ENERGY_FILE_ID, 0x00, 0x40, 0x43))  # ReturnFileData, 67 bytes at 0


def decode_energy(alp: bytes) -> tuple[list[int], list[int], list[int], list[int], int]:
    assert alp[:5] == ENERGY_HEADER
    values = struct.unpack_from("<3q3q3i3hB", alp, 5)
    return list(values[0:3]), list(values[3:6]), list(values[6:9]), list(values[9:12]), values[12]


def status_of(alp: bytes) -> tuple[int, int, bytes]:
    """(rx_level, link_budget, uid) of the trailing D7 interface status."""
    status = alp[-23:]
    assert status[:3] == bytes((0x62, 0xD7, 0x14))
    return status[6], status[7], status[-8:]


def test_uids_are_stable_and_distinct() -> None:
    uids = [s.uid for s in make_sensors(50, seed=9, behaviour=Behaviour(600))]
    assert uids == [s.uid for s in make_sensors(50, seed=9, behaviour=Behaviour(600))]
    assert len(set(uids)) == 50
    assert all(len(uid) == 8 and uid.startswith(UID_OUI) for uid in uids)
    assert uids[:5] != [s.uid for s in make_sensors(5, seed=10, behaviour=Behaviour(600))]
    # Provisioned devices are keyed by these: they must never change between versions.
    assert sensor_uid(1, 0) == bytes.fromhex("000b57123a65bd41")


def test_uids_do_not_depend_on_the_process() -> None:
    code = "from gateway_simulator.sensors import sensor_uid; print(sensor_uid(4, 2).hex())"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert outputs == {sensor_uid(4, 2).hex()}


def test_device_id_has_no_zero_padding() -> None:
    sensor = make_sensors(1, seed=1, behaviour=Behaviour(600))[0]
    assert sensor.device_id == "B57123A65BD41"


def test_energy_rises_and_readings_are_plausible() -> None:
    for sensor in make_sensors(10, seed=2, behaviour=Behaviour(interval_s=600)):
        previous_wh = previous_vah = None
        first_wh = decode_energy(sensor.energy_report())[1]
        for _ in range(100):
            alp = sensor.energy_report()
            vah, wh, current, voltage, valid = decode_energy(alp)
            assert valid == 1
            assert all(0 <= i <= 60_000 for i in current)
            assert all(225 <= v <= 240 for v in voltage)
            assert all(a >= w for a, w in zip(vah, wh, strict=True))
            if previous_wh is not None and previous_vah is not None:
                assert all(n >= p for n, p in zip(wh, previous_wh, strict=True))
                assert all(n >= p for n, p in zip(vah, previous_vah, strict=True))
            previous_wh, previous_vah = wh, vah
            rx_level, link_budget, uid = status_of(alp)
            assert uid == sensor.uid
            assert 40 <= link_budget <= 140
            assert rx_level == link_budget - 14
        assert previous_wh is not None
        assert sum(previous_wh) > sum(first_wh)


def test_total_energy_grows_slowly() -> None:
    sensor = make_sensors(1, seed=4, behaviour=Behaviour(interval_s=600))[0]
    start = sum(decode_energy(sensor.energy_report())[1])
    end = sum(decode_energy(sensor.energy_report())[1])
    for _ in range(143):
        end = sum(decode_energy(sensor.energy_report())[1])
    day_kwh = (end - start) / 1000
    assert 0 < day_kwh < 3 * 60 * 240 * 24 / 1000  # below three phases at 60 A all day


def test_invalid_readings_repeat_the_last_valid_values() -> None:
    sensor = make_sensors(1, seed=3, behaviour=Behaviour(600, invalid_probability=0.3))[0]
    last_valid = None
    invalid = 0
    for _ in range(200):
        *values, valid = decode_energy(sensor.energy_report())
        if valid:
            last_valid = values
        elif last_valid is not None:
            invalid += 1
            assert values == last_valid
    assert 20 < invalid < 120


def test_config_and_button_files() -> None:
    sensor = make_sensors(1, seed=1, behaviour=Behaviour(interval_s=2))[0]
    config = sensor.config_report()
    assert config[:4] == bytes((0x20, ENERGY_CONFIG_FILE_ID, 0x00, 0x05))
    assert struct.unpack_from("<IB", config, 4) == (2, 1)
    press, release = sensor.button_report(pressed=True), sensor.button_report(pressed=False)
    assert press[:7] == bytes((0x20, BUTTON_FILE_ID, 0x00, 0x03, 0, 1, 1))
    assert release[:7] == bytes((0x20, BUTTON_FILE_ID, 0x00, 0x03, 0, 0, 0))


def test_timeline_staggers_starts_and_keeps_the_interval() -> None:
    interval_s = 10.0
    sensors = make_sensors(4, seed=1, behaviour=Behaviour(interval_s, button_probability=0.3))
    timeline = Timeline(sensors, interval_s, random.Random(1))
    events = [timeline.next_event() for _ in range(400)]
    assert [e.at_s for e in events] == sorted(e.at_s for e in events)
    firsts: dict[str, float] = {}
    energy_times: dict[str, list[float]] = {}
    pressed: dict[str, bool] = {}
    for event in events:
        firsts.setdefault(event.device_id, event.at_s)
        if event.at_s == firsts[event.device_id]:
            assert event.kind is EventKind.CONFIG
        if event.kind is EventKind.ENERGY:
            energy_times.setdefault(event.device_id, []).append(event.at_s)
        elif event.kind is EventKind.BUTTON_PRESS:
            assert not pressed.get(event.device_id)
            pressed[event.device_id] = True
        elif event.kind is EventKind.BUTTON_RELEASE:
            assert pressed.pop(event.device_id)
    starts = sorted(firsts.values())
    assert len(starts) == 4
    assert all(b - a > 1.0 for a, b in itertools.pairwise(starts))
    assert starts[-1] < interval_s
    for times in energy_times.values():
        gaps = {round(b - a, 6) for a, b in itertools.pairwise(times)}
        assert gaps == {interval_s}
    kinds = [e.kind for e in events]
    assert EventKind.BUTTON_PRESS in kinds


def test_no_button_presses_at_probability_zero() -> None:
    sensors = make_sensors(3, seed=1, behaviour=Behaviour(1.0, button_probability=0.0))
    timeline = Timeline(sensors, 1.0, random.Random(1))
    kinds = {timeline.next_event().kind for _ in range(300)}
    assert kinds == {EventKind.CONFIG, EventKind.ENERGY}
