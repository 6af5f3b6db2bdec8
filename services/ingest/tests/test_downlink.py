"""ingest writes the commands to the modem: on a pty, against the real Redis.

What reaches the line is compared with what d7a builds for the same command; one command in
flight per modem, one per device; a command interrupted by a restart or a modem reboot is written
again and counted; expiry frees the modem; a write that cannot go out never holds the reads up.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
from prometheus_client import CollectorRegistry

from gateway_common.command_requests import request_command
from gateway_common.command_store import CommandStore
from gateway_common.commands import Answered, Command, CommandState
from gateway_common.devices import DeviceEntry
from gateway_common.entries import Addressing
from gateway_common.lifecycle import StopSignal
from gateway_common.streams import StreamKeys
from gateway_dash7 import (
    Addressee,
    AddressType,
    EnergyConfigFile,
    Frame,
    Framer,
    InterfaceConfiguration,
    MessageType,
    ModemAnswer,
    NlsMethod,
    RebootReason,
    WriteRequest,
    compress_time,
    encode_frame,
    encode_reboot_reason,
)
from gateway_ingest.downlink import addressee_for, dormant_timeout, request_for
from gateway_ingest.ingest import run
from gateway_ingest.serial_link import SerialLink, WriteTimeoutError
from gateway_ingest.settings import IngestSettings
from reference_alp import build_reference_write

pytestmark = pytest.mark.integration

UID_DEVICE = "323636300039004C"
OTHER = "B5700009151DC"
EXAMPLE = bytes.fromhex("B42A32D702732101323636300039004C043E00055802000001")
#: What the energy sensors' D7 status says: UID, access class 0x01, AES-CTR.
SENSOR = Addressing(AddressType.UID, 0x01, NlsMethod.AES_CTR)
T = TypeVar("T")


def _eventually(probe: Callable[[], T], timeout_s: float = 8.0) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


class Modem:
    """The modem's end of a pty: reads the host's frames, writes frames of its own."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self._framer = Framer()
        self.frames: list[Frame] = []

    def read_frames(self, count: int, timeout_s: float = 8.0) -> list[Frame]:
        deadline = time.monotonic() + timeout_s
        while len(self.frames) < count and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    data = os.read(self.master, 4096)
                    self.frames += [e for e in self._framer.feed(data) if isinstance(e, Frame)]
        return list(self.frames)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def modem() -> Iterator[Modem]:
    line = Modem()
    yield line
    line.close()


def _settings(port: str, redis_url: str, prefix: str, **overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "serial_port": port,
        "redis_url": redis_url,
        "stream_prefix": prefix,
        "serial_read_timeout_ms": 20,
        "reopen_backoff_max_s": 0.2,
        "redis_backoff_max_s": 0.2,
        "flush_timeout_s": 1.0,
        "metrics_port": None,
    }
    values.update(overrides)
    return IngestSettings(**values)


@contextlib.contextmanager
def running(settings: IngestSettings) -> Iterator[CollectorRegistry]:
    stop = StopSignal()
    registry = CollectorRegistry()
    thread = threading.Thread(target=run, args=(settings, stop, registry), daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        stop.set("test over")
        thread.join(10.0)
        assert not thread.is_alive(), "ingest did not stop"


def register(
    client: redis.Redis,
    keys: StreamKeys,
    device_id: str,
    interval_s: float | None = 600.0,
    addressing: Addressing | None = SENSOR,
) -> None:
    now = time.time()
    entry = DeviceEntry(now, now, 1, 70, interval_s, enabled=True, addressing=addressing)
    client.hset(keys.devices, device_id, entry.to_bytes())


def submit(
    store: CommandStore,
    client: redis.Redis,
    device_id: str,
    interval_s: int,
    timeout_s: float | None = None,
) -> Command:
    command = request_command(
        store,
        client,
        device_id=device_id,
        interval_s=interval_s,
        enabled=True,
        source="gatewayctl",
        now=time.time(),
        timeout_s=timeout_s,
    )
    assert command.state is CommandState.QUEUED, command.reason
    return command


def state_of(store: CommandStore, command_id: str) -> Command:
    command = store.get(command_id)
    assert command is not None
    return command


# ------------------------------------------------------------------ the request, pure


def test_the_request_of_the_issues_example() -> None:
    device = DeviceEntry(0.0, 0.0, 1, 70, 600.0, enabled=True, addressing=SENSOR)
    command = Command.queued(
        "1", UID_DEVICE, 600, enabled=True, source="mqtt", at=0.0, timeout_s=1860
    )
    request = request_for(command, device, 0x2A)
    assert request.encode() == EXAMPLE
    assert build_reference_write(request) == EXAMPLE


def test_addressees() -> None:
    assert addressee_for("ABCD", None) == Addressee(
        b"\xab\xcd", AddressType.VID, 0x01, NlsMethod.AES_CTR
    )
    assert addressee_for("ABCD", None, access_class=0x21).access_class == 0x21
    uid = addressee_for("ABCD", DeviceEntry(0, 0, 1, 1, addressing=Addressing(2, 0x11, 0)))
    assert uid == Addressee(bytes.fromhex("000000000000ABCD"), AddressType.UID, 0x11, 0)
    assert addressee_for(OTHER, None).address == bytes.fromhex("000B5700009151DC")


@pytest.mark.parametrize(
    ("interval_s", "seconds"), [(600, 1216), (10, 20), (86_400, 180_224), (31, 64)]
)
def test_the_dormant_timeout_outlasts_two_intervals(interval_s: float, seconds: int) -> None:
    byte = dormant_timeout(interval_s)
    assert byte == compress_time(seconds)
    assert 2 * interval_s <= seconds


# ------------------------------------------------------------------ on the line


def test_a_command_reaches_the_line_as_d7a_builds_it(
    modem: Modem, redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    keys = StreamKeys(stream_prefix)
    store = CommandStore(redis_client, keys)
    register(redis_client, keys, UID_DEVICE)
    with running(_settings(modem.path, redis_url, stream_prefix)) as registry:
        command = submit(store, redis_client, UID_DEVICE, 300)
        (frame,) = modem.read_frames(1)
        assert _eventually(lambda: state_of(store, command.id).tag is not None)
        sent = state_of(store, command.id)
    assert (frame.message_type, frame.counter) == (MessageType.ALP_DATA, 0)
    assert sent.state is CommandState.SENT
    assert sent.attempts == 1
    expected = WriteRequest(
        tag_id=sent.tag,
        configuration=InterfaceConfiguration(
            Addressee(bytes.fromhex(UID_DEVICE), AddressType.UID, 0x01, NlsMethod.AES_CTR),
            dormant_timeout=compress_time(1200),
        ),
        file_id=62,
        data=EnergyConfigFile(300, enabled=True).encode(),
    )
    assert frame.payload == build_reference_write(expected)
    assert registry.get_sample_value("gateway_commands_written_total") == 1
    assert registry.get_sample_value("gateway_commands_in_flight") == 1
    assert registry.get_sample_value("gateway_commands_total", {"state": "sent"}) == 1


def completion(counter: int, tag: int, *, error: bool = False) -> bytes:
    """The modem's completion of the request `tag` (protocol.md 5.2), as a frame."""
    answer = ModemAnswer(tag, end_of_procedure=True, error=error, status=None)
    return encode_frame(counter, MessageType.ALP_DATA, answer.encode())


def tag_of(frame: Frame) -> int:
    return WriteRequest.parse(frame.payload).tag_id


def test_one_request_in_the_modem_and_one_command_per_device(
    modem: Modem, redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    keys = StreamKeys(stream_prefix)
    store = CommandStore(redis_client, keys)
    register(redis_client, keys, UID_DEVICE)
    register(redis_client, keys, OTHER)
    first = submit(store, redis_client, UID_DEVICE, 300)
    again = submit(store, redis_client, UID_DEVICE, 400)
    other = submit(store, redis_client, OTHER, 500)
    with running(_settings(modem.path, redis_url, stream_prefix)) as registry:
        (frame,) = modem.read_frames(1)
        assert len(modem.read_frames(2, timeout_s=1.5)) == 1  # the modem holds a request
        assert state_of(store, other.id).state is CommandState.QUEUED
        assert registry.get_sample_value("gateway_commands_in_flight") == 1
        # the modem completes it: the other device's command goes, not the same device's
        # (its first command has not ended: no decoder runs here, it stays sent)
        modem.write(completion(2, tag_of(frame)))
        frames = modem.read_frames(2)
        assert len(frames) == 2
        assert frames[1].counter == 1  # the host's own counter
        assert EnergyConfigFile(500, enabled=True).encode() in frames[1].payload
        assert state_of(store, other.id).state is CommandState.SENT
        assert state_of(store, again.id).state is CommandState.QUEUED
        modem.write(completion(3, tag_of(frames[1]), error=True))
        store.apply(first.id, Answered(time.time(), end_of_procedure=True, error=False))
        assert len(modem.read_frames(3, timeout_s=1.5)) == 2  # acknowledged: the device waits
        assert state_of(store, again.id).state is CommandState.QUEUED


def test_an_expired_command_keeps_the_modem_until_the_modem_ends_its_session(
    modem: Modem, redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    keys = StreamKeys(stream_prefix)
    store = CommandStore(redis_client, keys)
    register(redis_client, keys, UID_DEVICE)
    register(redis_client, keys, OTHER)
    first = submit(store, redis_client, UID_DEVICE, 300, timeout_s=1.0)
    second = submit(store, redis_client, OTHER, 300, timeout_s=30.0)
    with running(_settings(modem.path, redis_url, stream_prefix)) as registry:
        (frame,) = modem.read_frames(1)
        expired = _eventually(lambda: state_of(store, first.id).state is CommandState.EXPIRED)
        assert expired
        assert registry.get_sample_value("gateway_commands_total", {"state": "expired"}) == 1
        # the modem still holds the request (its dormant timeout is 1,216 s): nothing else goes
        assert len(modem.read_frames(2, timeout_s=1.5)) == 1
        modem.write(completion(2, tag_of(frame), error=True))  # the modem gives up on it
        assert len(modem.read_frames(2)) == 2
        assert state_of(store, second.id).state is CommandState.SENT
    reason = state_of(store, first.id).reason
    assert reason == "no answer from the device within 1 s of the last write"


def test_a_command_interrupted_by_a_restart_is_written_again_and_counted(
    modem: Modem, redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    keys = StreamKeys(stream_prefix)
    store = CommandStore(redis_client, keys)
    register(redis_client, keys, UID_DEVICE)
    command = submit(store, redis_client, UID_DEVICE, 300)
    settings = _settings(modem.path, redis_url, stream_prefix)
    with running(settings):
        modem.read_frames(1)
        _eventually(lambda: state_of(store, command.id).state is CommandState.SENT)
    with running(settings) as registry:
        frames = modem.read_frames(2)
        resent = _eventually(
            lambda: registry.get_sample_value(
                "gateway_commands_resent_total", {"reason": "ingest_restarted"}
            )
        )
    assert resent == 1
    assert len(frames) == 2
    # the same write, under a new tag (the modem's sessions are told apart by their tags)
    first, second = (WriteRequest.parse(f.payload) for f in frames)
    assert first._replace(tag_id=0) == second._replace(tag_id=0)
    assert first.tag_id != second.tag_id
    command = state_of(store, command.id)
    assert (command.attempts, command.tag) == (2, second.tag_id)


def test_a_modem_reboot_writes_again_what_it_held(
    modem: Modem, redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    keys = StreamKeys(stream_prefix)
    store = CommandStore(redis_client, keys)
    register(redis_client, keys, UID_DEVICE)
    command = submit(store, redis_client, UID_DEVICE, 300)
    with running(_settings(modem.path, redis_url, stream_prefix)) as registry:
        modem.read_frames(1)
        modem.write(
            encode_frame(1, MessageType.REBOOTED, encode_reboot_reason(RebootReason.WATCHDOG))
        )
        assert len(modem.read_frames(2)) == 2
        assert (
            _eventually(
                lambda: registry.get_sample_value(
                    "gateway_commands_resent_total", {"reason": "modem_rebooted"}
                )
            )
            == 1
        )
    assert state_of(store, command.id).attempts == 2


def test_a_stuck_write_times_out_and_never_holds_the_reads(modem: Modem) -> None:
    link = SerialLink(modem.path, 115200, read_timeout_s=0.05, write_timeout_s=0.3)
    link.open()
    try:
        errors: list[Exception] = []

        def flood() -> None:  # nobody reads the modem's side: the pty fills up
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    link.write(b"\x55" * 1024)
                except WriteTimeoutError as exc:
                    errors.append(exc)
                    return

        writer = threading.Thread(target=flood)
        writer.start()
        frame = encode_frame(1, MessageType.ALP_DATA, b"\x01\x02")
        modem.write(frame)
        got = b""
        deadline = time.monotonic() + 2
        while len(got) < len(frame) and time.monotonic() < deadline:
            got += link.read()
        assert got == frame
        writer.join(12)
        assert errors, "the write never timed out"
    finally:
        link.close()
