"""The simulated modem's downlink: a host request held until the sensor's next uplink, applied,
answered, the new EnergyConfigFile sent and the new interval kept; refusal and silence."""

from __future__ import annotations

import random
import threading

from gateway_common.lifecycle import StopSignal
from gateway_dash7 import (
    Addressee,
    EnergyConfigFile,
    Frame,
    Framer,
    InterfaceConfiguration,
    MessageType,
    ModemAnswer,
    UnsolicitedMessage,
    WriteRequest,
    compress_time,
    decode_file,
    encode_frame,
    parse_received,
)
from gateway_simulator.modem import Modem
from gateway_simulator.sensors import Behaviour, make_sensors
from gateway_simulator.sessions import Sessions
from gateway_simulator.simulation import run
from gateway_simulator.timeline import Timeline

INTERVAL_S = 0.3


class HostTransport:
    """Frames written by the modem, and host bytes for it to read (a thread-safe in-memory line)."""

    url = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = bytearray()
        self.inbox = bytearray()

    def write(self, data: bytes) -> bool:
        with self._lock:
            self.sent += data
        return True

    def read_available(self) -> bytes:
        with self._lock:
            data, self.inbox = bytes(self.inbox), bytearray()
        return data

    def host_writes(self, data: bytes) -> None:
        with self._lock:
            self.inbox += data

    def frames(self) -> list[Frame]:
        with self._lock:
            data = bytes(self.sent)
        return [e for e in Framer().feed(data) if isinstance(e, Frame)]

    def close(self) -> None:
        pass


def request_to(uid: bytes, tag: int, interval_s: int, *, dormant_s: int = 60) -> bytes:
    request = WriteRequest(
        tag_id=tag,
        configuration=InterfaceConfiguration(
            Addressee(uid), dormant_timeout=compress_time(dormant_s)
        ),
        file_id=62,
        data=EnergyConfigFile(interval_s, enabled=True).encode(),
    )
    return encode_frame(0, MessageType.ALP_DATA, request.encode())


def simulate(
    frames: int, host: bytes, *, refuse: set[str] = frozenset(), silent: set[str] = frozenset()
):
    sensors = make_sensors(1, seed=3, behaviour=Behaviour(interval_s=INTERVAL_S))
    (sensor,) = sensors
    transport = HostTransport()
    transport.host_writes(host)
    sessions = Sessions(sensors, refuse=refuse, silent=silent)
    timeline = Timeline(sensors, INTERVAL_S, random.Random(3))
    run(Modem(), timeline, transport, StopSignal(), frames, sessions=sessions)
    decoded = [parse_received(f.payload) for f in transport.frames() if f.message_type == 1]
    return sensor, decoded


def config_reports(messages) -> list[EnergyConfigFile]:
    return [
        decode_file(62, m.data)
        for m in messages
        if isinstance(m, UnsolicitedMessage) and m.file_id == 62
    ]


def test_the_write_waits_for_the_next_uplink_then_is_applied_and_answered() -> None:
    sensors = make_sensors(1, seed=3, behaviour=Behaviour(interval_s=INTERVAL_S))
    uid = sensors[0].uid
    # REBOOTED, the boot config, the response, the completion, the new config
    sensor, messages = simulate(5, request_to(uid, 0x2A, 45))
    kinds = [
        ("answer", m.end_of_procedure, m.error) if isinstance(m, ModemAnswer) else (m.file_id,)
        for m in messages
    ]
    # the request is read before the sensor's first uplink, and delivered in its exchange
    assert kinds == [(62,), ("answer", False, False), ("answer", True, False), (62,)]
    response, completion = messages[1], messages[2]
    assert isinstance(response, ModemAnswer)
    assert isinstance(completion, ModemAnswer)
    assert response.tag_id == completion.tag_id == 0x2A
    assert response.status is not None
    assert response.status.address == uid
    assert completion.status is None
    assert config_reports(messages)[-1] == EnergyConfigFile(45, enabled=True)
    assert (sensor.interval_s, sensor.enabled) == (45.0, True)


def test_the_new_interval_is_kept_and_a_disabled_sensor_reports_its_config() -> None:
    sensors = make_sensors(1, seed=3, behaviour=Behaviour(interval_s=10.0))
    (sensor,) = sensors
    timeline = Timeline(sensors, 10.0, random.Random(1))
    boot = timeline.next_event()
    first = timeline.next_event()
    assert (boot.kind.value, first.kind.value) == ("config", "energy")
    sensor.apply(25, enabled=False)
    timeline.reconfigured(sensor, first.at_s)
    reconfigured = timeline.next_event()
    assert reconfigured.kind.value == "reconfigured"
    assert decode_file(62, parse_received(reconfigured.alp).data) == EnergyConfigFile(25, False)  # type: ignore[union-attr]  # noqa: FBT003
    following = [timeline.next_event() for _ in range(3)]
    assert [e.kind.value for e in following] == ["energy"] * 3
    gaps = [b.at_s - a.at_s for a, b in zip([reconfigured, *following], following, strict=False)]
    assert all(abs(gap - 25) < 0.1 for gap in gaps[1:]), gaps
    assert all(parse_received(e.alp).file_id == 62 for e in following)  # type: ignore[union-attr]


def test_a_refusing_sensor_and_a_silent_one() -> None:
    sensors = make_sensors(1, seed=3, behaviour=Behaviour(interval_s=INTERVAL_S))
    device = sensors[0].device_id
    _, refused = simulate(5, request_to(sensors[0].uid, 7, 60), refuse={device})
    answers = [m for m in refused if isinstance(m, ModemAnswer)]
    assert [(a.tag_id, a.end_of_procedure, a.error) for a in answers] == [(7, True, True)]
    sensor, silent = simulate(5, request_to(sensors[0].uid, 8, 60), silent={device})
    assert not [m for m in silent if isinstance(m, ModemAnswer)]
    assert sensor.interval_s == INTERVAL_S


def test_one_master_session_and_the_same_request_again() -> None:
    sensors = make_sensors(2, seed=3, behaviour=Behaviour(interval_s=10.0))
    sessions = Sessions(sensors)
    first = request_to(sensors[0].uid, 1, 60)[7:]
    assert sessions.request(first, 0.0) == []
    assert sessions.request(first, 1.0) == []  # written again after a restart: kept
    busy = sessions.request(request_to(sensors[1].uid, 2, 60)[7:], 2.0)
    assert [parse_received(b) for b in busy] == [ModemAnswer(2, True, True, None)]  # noqa: FBT003
    assert sessions.expire(60.0) == []
    timed_out = sessions.expire(61.5)
    assert [parse_received(b) for b in timed_out] == [ModemAnswer(1, True, True, None)]  # noqa: FBT003
    assert sessions.held is None
    assert sessions.request(b"\x01\x02", 0.0) == []  # unreadable: logged, ignored
