"""ingest end to end against the real Redis; a TCP server or a pty stands in for the modem."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from gateway_common.entries import FrameEntry, decode_frame
from gateway_common.health import Health
from gateway_common.lifecycle import StopSignal
from gateway_common.streams import ENTRY_FIELD, StreamKeys
from gateway_dash7 import MessageType, RebootReason, encode_frame
from gateway_devkit.disks import aof_on_full_device
from gateway_devkit.modem_line import ModemLine
from gateway_devkit.polling import wait_until
from gateway_devkit.processes import clean_env
from gateway_devkit.scrape import sample
from gateway_devkit.servers import PrivateRedis, free_port
from gateway_ingest.frame_sink import CounterState, FrameSink, load_counter_state
from gateway_ingest.ingest import run
from gateway_ingest.metrics import IngestMetrics
from gateway_ingest.settings import IngestSettings

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).parent / "gateway-ingest"
GARBAGE = [b"", b"\x01\x02", b"\xc0", b"\xc0\x55\xff", b"\x00\xc0\xc0", b"\x7e\x0d\x0a"]
CHUNKS = [1, 2, 3, 5, 8, 13, 21, 64, 7]


class ModemServer:
    """A TCP server that plays the modem for `socket://127.0.0.1:<port>`."""

    def __init__(self) -> None:
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self.listen()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(1)
        listener.settimeout(10.0)
        self._listener = listener

    def accept(self) -> None:
        assert self._listener is not None
        self._conn, _ = self._listener.accept()

    def send(self, data: bytes) -> None:
        """Send in odd chunk sizes, with short pauses, as a UART behind USB would deliver them."""
        assert self._conn is not None
        pos = i = 0
        while pos < len(data):
            size = CHUNKS[i % len(CHUNKS)]
            self._conn.sendall(data[pos : pos + size])
            pos += size
            i += 1
            if i % 4 == 0:
                time.sleep(0.001)

    def close(self) -> None:
        for sock in (self._conn, self._listener):
            if sock is not None:
                sock.close()
        self._conn = self._listener = None


@pytest.fixture
def modem() -> Iterator[ModemServer]:
    server = ModemServer()
    yield server
    server.close()


def _settings(port: str, redis_url: str, prefix: str, **overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "serial_port": port,
        "redis_url": redis_url,
        "stream_prefix": prefix,
        "serial_read_timeout_ms": 20,
        "reopen_backoff_max_s": 0.2,
        "redis_backoff_max_s": 0.2,
        "flush_timeout_s": 3.0,
        "metrics_port": None,
    }
    values.update(overrides)
    return IngestSettings(**values)


@contextlib.contextmanager
def running(settings: IngestSettings) -> Iterator[tuple[CollectorRegistry, threading.Thread]]:
    stop = StopSignal()
    registry = CollectorRegistry()
    thread = threading.Thread(target=run, args=(settings, stop, registry), daemon=True)
    thread.start()
    try:
        yield registry, thread
    finally:
        stop.set("test over")
        thread.join(10.0)
        assert not thread.is_alive(), "ingest did not stop"


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def _entries(client: redis.Redis, stream: str) -> list[FrameEntry]:
    out = []
    for _id, fields in client.xrange(stream):
        assert set(fields) == {ENTRY_FIELD}
        out.append(decode_frame(fields[ENTRY_FIELD]))
    return out


def _wait_entries(client: redis.Redis, stream: str, count: int) -> list[FrameEntry]:
    wait_until(lambda: client.xlen(stream) >= count)
    return _entries(client, stream)


def _alp_frames(first_counter: int, count: int, size: int = 20) -> list[tuple[bytes, int]]:
    """(payload, counter) of `count` distinct ALP frames."""
    return [
        (bytes([(first_counter + i) & 0xFF]) * size + b"\x62\xd7", (first_counter + i) & 0xFF)
        for i in range(count)
    ]


def _wire(frames: list[tuple[bytes, int]], garbage: bool = True) -> bytes:
    data = b""
    for i, (payload, counter) in enumerate(frames):
        data += (GARBAGE[i % len(GARBAGE)] if garbage else b"") + encode_frame(
            counter, MessageType.ALP_DATA, payload
        )
    return data


def _assert_frames(entries: list[FrameEntry], frames: list[tuple[bytes, int]]) -> None:
    assert [(e.alp, e.counter) for e in entries] == frames


# ------------------------------------------------------------------ socket://


def test_frames_of_one_read_get_distinct_increasing_receive_times(
    modem: ModemServer, redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    frames = _alp_frames(1, 6, size=60)
    stream = StreamKeys(stream_prefix).frames
    with running(_settings(modem.url, redis_url, stream_prefix)):
        modem.accept()
        time.sleep(0.3)  # the port is open and idle
        before = time.time()
        assert modem._conn is not None
        modem._conn.sendall(_wire(frames, garbage=False))  # one write: most likely one read
        entries = _wait_entries(redis_client, stream, len(frames))
        after = time.time()
    _assert_frames(entries, frames)
    times = [e.received_at for e in entries]
    assert len(set(times)) == len(times), times
    assert times == sorted(times)
    # No earlier than the previous (idle) read returned, no later than the frames arrived.
    assert before - 0.25 <= times[0]
    assert times[-1] <= after


def test_vectors_over_socket_in_odd_chunks_with_garbage(
    modem: ModemServer,
    vectors: list[dict[str, Any]],
    redis_url: str,
    redis_client: redis.Redis,
    stream_prefix: str,
) -> None:
    data = b""
    expected: list[tuple[bytes, int]] = []
    for i, case in enumerate(vectors):
        raw = bytes.fromhex(case["frame_hex"])
        data += GARBAGE[i % len(GARBAGE)] + raw
        if "alp_hex" in case:
            expected.append((bytes.fromhex(case["alp_hex"]), raw[2]))
        elif case["name"] == "bad_crc_then_good":
            good = raw[raw.index(b"\xc0\x00\x0d") :]
            expected.append((good[7:], good[2]))
    stream = StreamKeys(stream_prefix).frames

    with running(_settings(modem.url, redis_url, stream_prefix)) as (registry, _):
        modem.accept()
        before = time.time()
        modem.send(data)
        entries = _wait_entries(redis_client, stream, len(expected))
        after = time.time()

        _assert_frames(entries, expected)
        times = [e.received_at for e in entries]
        assert times == sorted(times)
        assert before <= times[0]
        assert times[-1] <= after
        assert _sample(registry, "gateway_frames_received_total") == len(expected)
        assert wait_until(lambda: _sample(registry, "gateway_ingest_frames_written_total"))
        assert _sample(registry, "gateway_serial_errors_total", kind="crc") == 1
        # counters 1..11, REBOOTED 1, LOGGING 2, then 13 (12 had the bad CRC): one gap
        assert _sample(registry, "gateway_serial_errors_total", kind="counter_gap") == 1
        assert _sample(registry, "gateway_modem_missed_frames_total") == 10
        reboots = _sample(registry, "gateway_modem_reboots_total", reason="power_on")
        assert reboots == 1
        assert _sample(registry, "gateway_modem_messages_total", type="logging") == 1
        assert _sample(registry, "gateway_serial_connected") == 1
        assert wait_until(lambda: _sample(registry, "gateway_ingest_buffered_frames") == 0)
    assert redis_client.xlen(stream) == len(expected)


def test_other_message_types_are_counted_not_streamed(
    modem: ModemServer, redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    data = (
        encode_frame(1, MessageType.REBOOTED, bytes([RebootReason.WATCHDOG]))
        + encode_frame(2, MessageType.PING_RESPONSE, b"\x02")
        + encode_frame(3, 0x42, b"??")
        + encode_frame(4, MessageType.LOGGING, b"caf\xc3\xa9")
        + encode_frame(5, MessageType.ALP_DATA, b"\x20\x33")
    )
    stream = StreamKeys(stream_prefix).frames
    with running(_settings(modem.url, redis_url, stream_prefix)) as (registry, _):
        modem.accept()
        modem.send(data)
        _assert_frames(_wait_entries(redis_client, stream, 1), [(b"\x20\x33", 5)])
        assert _sample(registry, "gateway_modem_reboots_total", reason="watchdog") == 1
        for kind in ("rebooted", "ping_response", "unknown", "logging"):
            assert _sample(registry, "gateway_modem_messages_total", type=kind) == 1
        assert _sample(registry, "gateway_serial_errors_total", kind="counter_gap") == 0


def test_port_lost_and_back(
    modem: ModemServer, redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    stream = StreamKeys(stream_prefix).frames
    first, second = _alp_frames(1, 5), _alp_frames(6, 5)
    with running(_settings(modem.url, redis_url, stream_prefix)) as (registry, thread):
        modem.accept()
        # half a frame before the peer vanishes: garbage once the port is reopened
        modem.send(_wire(first) + encode_frame(99, MessageType.ALP_DATA, b"lost")[:6])
        _assert_frames(_wait_entries(redis_client, stream, len(first)), first)

        modem.close()
        assert wait_until(lambda: _sample(registry, "gateway_serial_connected") == 0)
        time.sleep(0.3)  # a few failed reopen attempts
        assert thread.is_alive()

        modem.listen()
        modem.accept()
        assert wait_until(lambda: _sample(registry, "gateway_serial_connected") == 1)
        modem.send(encode_frame(99, MessageType.ALP_DATA, b"lost")[6:] + _wire(second))
        entries = _wait_entries(redis_client, stream, len(first) + len(second))
        _assert_frames(entries, first + second)
        assert _sample(registry, "gateway_serial_opens_total") == 2
        # the half frame the port loss cut: given up as truncated, not silently
        assert _sample(registry, "gateway_serial_errors_total", kind="truncated") == 1
        assert thread.is_alive()


def test_a_crc_error_just_before_the_port_is_lost_is_still_counted(
    modem: ModemServer, redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    bad = bytearray(encode_frame(3, MessageType.ALP_DATA, b"corrupted"))
    bad[-1] ^= 0xFF
    with running(_settings(modem.url, redis_url, stream_prefix)) as (registry, _):
        modem.accept()
        modem.send(_wire(_alp_frames(1, 2)) + bytes(bad))  # no sync after it: its resync goes on
        _wait_entries(redis_client, StreamKeys(stream_prefix).frames, 2)
        modem.close()
        assert wait_until(lambda: _sample(registry, "gateway_serial_connected") == 0)
        assert wait_until(lambda: _sample(registry, "gateway_serial_errors_total", kind="crc") == 1)
        assert _sample(registry, "gateway_serial_discarded_bytes_total") >= len(bad)


def test_corrupted_length_does_not_hold_frames_back_on_an_idle_line(
    modem: ModemServer, redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    stream = StreamKeys(stream_prefix).frames
    frames = _alp_frames(2, 2)
    # a header claiming 250 payload bytes, then two good frames, then silence
    bad_header = b"\xc0\x00\x01\x01\xfa\x12\x34"
    settings = _settings(modem.url, redis_url, stream_prefix, partial_frame_timeout_ms=200)
    with running(settings) as (registry, _):
        modem.accept()
        sent = time.monotonic()
        modem.send(bad_header + _wire(frames, garbage=False))
        _assert_frames(_wait_entries(redis_client, stream, len(frames)), frames)
        assert 0.2 <= time.monotonic() - sent < 2.0
        assert _sample(registry, "gateway_serial_errors_total", kind="truncated") == 1


# ------------------------------------------------------------------ pty


def test_pty_raw_bytes_arrive_unmangled(
    redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    line = ModemLine()
    # every byte value, including CR, LF, XON/XOFF, ^C, DEL, inside payloads and counters
    frames = [(bytes(range(255)), 0x0D), (bytes(range(1, 256)), 0x11), (b"\x0d\x0a\x03", 0x13)]
    frames += _alp_frames(0x14, 20)
    data = _wire(frames)
    stream = StreamKeys(stream_prefix).frames
    try:
        with running(_settings(line.path, redis_url, stream_prefix)) as (registry, _):
            assert wait_until(lambda: _sample(registry, "gateway_serial_connected") == 1)
            for i in range(0, len(data), 50):
                line.write(data[i : i + 50])
            _assert_frames(_wait_entries(redis_client, stream, len(frames)), frames)
            assert _sample(registry, "gateway_serial_errors_total", kind="crc") == 0
    finally:
        line.close()


# ------------------------------------------------------------------ Redis away


def test_frames_buffered_while_redis_is_away(
    modem: ModemServer, private_redis: Callable[..., PrivateRedis], stream_prefix: str
) -> None:
    # Without persistence: a restarted server starts empty.
    redis_server = private_redis(appendfsync=None)
    client = redis.Redis.from_url(redis_server.url)
    stream = StreamKeys(stream_prefix).frames
    before, during, after = _alp_frames(1, 5), _alp_frames(6, 40), _alp_frames(46, 5)
    settings = _settings(modem.url, redis_server.url, stream_prefix)
    try:
        with running(settings) as (registry, _):
            modem.accept()
            modem.send(_wire(before))
            _assert_frames(_wait_entries(client, stream, len(before)), before)

            redis_server.stop()  # no persistence: the restarted server starts empty
            modem.send(_wire(during))
            assert wait_until(
                lambda: _sample(registry, "gateway_ingest_buffered_frames") == len(during)
            )
            time.sleep(0.3)  # several failed write attempts
            assert _sample(registry, "gateway_ingest_buffered_frames") == len(during)

            redis_server.start()
            _assert_frames(_wait_entries(client, stream, len(during)), during)
            modem.send(_wire(after))
            _assert_frames(_wait_entries(client, stream, len(during) + len(after)), during + after)
            assert (
                _sample(registry, "gateway_ingest_dropped_frames_total", reason="buffer_full") == 0
            )
            # Every frame's wait for Redis is on record, those of the outage with its length.
            handoff = "gateway_ingest_handoff_seconds"
            total = len(before) + len(during) + len(after)
            assert wait_until(lambda: _sample(registry, f"{handoff}_count") == total)
            waited = total - _sample(registry, f"{handoff}_bucket", le="0.25")
            assert waited >= len(during)
    finally:
        client.close()


def test_a_redis_that_cannot_persist_is_named_and_waited_out(
    modem: ModemServer, private_redis: Callable[..., PrivateRedis], stream_prefix: str
) -> None:
    """Redis refusing writes with MISCONF (its AOF on a device that is full: appendfsync
    everysec) is named in the health reason and the gauge, the frames wait in the buffer, and a
    restart would not help; the counter the previous ingest saved is still read (reads work,
    only PING is refused: no health-check PING before it), so the frame missed meanwhile is
    counted. Once Redis can write its AOF again, the frames go in."""
    redis_server = private_redis(appendfsync="everysec")
    keys = StreamKeys(stream_prefix)
    client = redis.Redis.from_url(redis_server.url)
    client.hset(keys.ingest_state, mapping={"counter": 3, "after_reboot": 0, "seen_at": "1.0"})
    client.bgrewriteaof()  # the saved counter into the AOF's base, safe from the device
    assert wait_until(lambda: not client.info("persistence")["aof_rewrite_in_progress"])
    aof_on_full_device(redis_server)
    client = redis.Redis.from_url(redis_server.url)
    with pytest.raises(redis.ResponseError, match="MISCONF"):
        client.xadd(keys.frames, {ENTRY_FIELD: b"refused"})
    frames = _alp_frames(5, 5)  # frame 4 was sent while no ingest ran
    settings = _settings(modem.url, redis_server.url, stream_prefix)
    health = Health("ingest")
    stop = StopSignal()
    registry = CollectorRegistry()
    thread = threading.Thread(target=run, args=(settings, stop, registry, health), daemon=True)
    thread.start()
    try:
        modem.accept()
        modem.send(_wire(frames))
        assert wait_until(lambda: _sample(registry, "gateway_ingest_buffered_frames") == 5)
        reason = "redis: cannot write frames: Redis cannot persist: No space left on device"
        assert wait_until(lambda: reason in health.state().reason), health.state()
        refusing = "gateway_redis_refusing_writes"
        assert _sample(registry, refusing, reason="persistence") == 1
        assert health.state().unhealthy_for_s == 0  # never a reason for the watchdog
        assert _sample(registry, "gateway_modem_missed_frames_total") == 1

        client.bgrewriteaof()  # a new AOF file, on the disk: Redis can write again
        _assert_frames(_wait_entries(client, keys.frames, len(frames)), frames)
        assert wait_until(lambda: _sample(registry, refusing, reason="persistence") == 0)
        assert wait_until(lambda: "redis" not in health.state().reason), health.state()
    finally:
        stop.set("test over")
        thread.join(10.0)
        client.close()
    assert not thread.is_alive(), "ingest did not stop"


def test_buffer_full_drops_the_oldest(
    modem: ModemServer, private_redis: Callable[..., PrivateRedis], stream_prefix: str
) -> None:
    # Not started yet; without persistence, a restarted server starts empty.
    redis_server = private_redis(appendfsync=None, start=False)
    stream = StreamKeys(stream_prefix).frames
    frames = _alp_frames(1, 30)
    settings = _settings(
        modem.url, redis_server.url, stream_prefix, buffer_frames=10, write_batch_frames=4
    )
    client = redis.Redis.from_url(redis_server.url)
    try:
        with running(settings) as (registry, _):  # Redis not started yet
            modem.accept()
            modem.send(_wire(frames))
            assert wait_until(
                lambda: _sample(registry, "gateway_frames_received_total") == len(frames)
            )
            assert _sample(registry, "gateway_ingest_buffered_frames") == 10
            assert (
                _sample(registry, "gateway_ingest_dropped_frames_total", reason="buffer_full") == 20
            )
            redis_server.start()
            _wait_entries(client, stream, 10)
            time.sleep(0.1)  # nothing more may come
            _assert_frames(_entries(client, stream), frames[-10:])
    finally:
        client.close()


# ------------------------------------------------------------------ SIGTERM


def test_sigterm_flushes_frames_already_read(
    modem: ModemServer, private_redis: Callable[..., PrivateRedis], stream_prefix: str
) -> None:
    # Not started yet; without persistence, a restarted server starts empty.
    redis_server = private_redis(appendfsync=None, start=False)
    metrics_port = free_port()
    env = clean_env(
        GATEWAY_SERIAL_PORT=modem.url,
        GATEWAY_REDIS_URL=redis_server.url,  # not started yet: frames wait in the buffer
        GATEWAY_STREAM_PREFIX=stream_prefix,
        GATEWAY_METRICS_PORT=str(metrics_port),
        GATEWAY_REDIS_BACKOFF_MAX_S="0.2",
        GATEWAY_FLUSH_TIMEOUT_S="20",
        GATEWAY_LOG_FORMAT="json",
    )
    frames = _alp_frames(1, 25)
    proc = subprocess.Popen(
        [str(SCRIPT)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    client = redis.Redis.from_url(redis_server.url)
    try:
        modem.accept()
        modem.send(_wire(frames))
        buffered = wait_until(
            lambda: sample(metrics_port, "gateway_ingest_buffered_frames") == len(frames), 10.0
        )
        assert buffered, "frames were not read"
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None, "ingest exited without flushing"
        redis_server.start()
        assert proc.wait(20) == 0
        _assert_frames(_entries(client, StreamKeys(stream_prefix).frames), frames)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
    assert '"event": "ingest_stopped"' in stderr
    assert '"unflushed": 0' in stderr


# ------------------------------------------------------------------ counter across restarts


def _state(client: redis.Redis, prefix: str) -> dict[bytes, bytes]:
    raw: dict[bytes, bytes] = client.hgetall(StreamKeys(prefix).ingest_state)
    return raw


def _persisted_counter(client: redis.Redis, prefix: str) -> int | None:
    raw = _state(client, prefix)
    return int(raw[b"counter"]) if raw else None


def test_frames_sent_while_ingest_is_down_are_counted_at_restart(
    modem: ModemServer, redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    stream = StreamKeys(stream_prefix).frames
    first, after = _alp_frames(1, 3), _alp_frames(8, 2)
    settings = _settings(modem.url, redis_url, stream_prefix)
    with running(settings) as (registry, _):
        modem.accept()
        # every frame type advances the counter: the LOGGING frame 4 is persisted too
        modem.send(_wire(first) + encode_frame(4, MessageType.LOGGING, b"hello"))
        _wait_entries(redis_client, stream, len(first))
        assert wait_until(lambda: _persisted_counter(redis_client, stream_prefix) == 4)
        assert _sample(registry, "gateway_modem_missed_frames_total") == 0
    modem.close()
    # frames 5, 6, 7: the modem sent them while no ingest held the port; they are gone

    modem.listen()
    with running(settings) as (registry, _):
        modem.accept()
        modem.send(_wire(after))
        _assert_frames(_wait_entries(redis_client, stream, len(first) + len(after)), first + after)
        assert _sample(registry, "gateway_serial_errors_total", kind="counter_gap") == 1
        assert _sample(registry, "gateway_modem_missed_frames_total") == 3
        assert wait_until(lambda: _persisted_counter(redis_client, stream_prefix) == 9)
    state = _state(redis_client, stream_prefix)
    assert state[b"after_reboot"] == b"0"
    assert abs(float(state[b"seen_at"]) - time.time()) < 10


def test_a_clock_behind_the_last_saved_frame_is_reported_until_it_catches_up(
    modem: ModemServer, redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    ahead_s = 2.5  # the previous ingest saw its last frame "later" than now: the clock went back
    redis_client.hset(
        StreamKeys(stream_prefix).ingest_state,
        mapping={"counter": 1, "after_reboot": 0, "seen_at": repr(time.time() + ahead_s)},
    )
    stream = StreamKeys(stream_prefix).frames
    with running(_settings(modem.url, redis_url, stream_prefix)) as (registry, _):
        modem.accept()
        modem.send(_wire(_alp_frames(2, 1)))
        _wait_entries(redis_client, stream, 1)
        behind = _sample(registry, "gateway_ingest_clock_behind_seconds")
        assert 1.0 < behind <= ahead_s
        # the clock passes the saved frame's time: the problem ends, with or without a frame
        assert wait_until(
            lambda: _sample(registry, "gateway_ingest_clock_behind_seconds") == 0,
            timeout_s=ahead_s + 5,
        )
        modem.send(_wire(_alp_frames(3, 1)))
        _wait_entries(redis_client, stream, 2)
        assert _sample(registry, "gateway_serial_errors_total", kind="counter_gap") == 0


def test_no_gap_across_a_restart_without_losses(
    modem: ModemServer, redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    stream = StreamKeys(stream_prefix).frames
    settings = _settings(modem.url, redis_url, stream_prefix)
    for first_counter in (254, 0):  # across the wrap
        with running(settings) as (registry, _):
            modem.accept()
            modem.send(_wire(_alp_frames(first_counter, 2)))
            _wait_entries(redis_client, stream, 2 if first_counter == 254 else 4)
            assert wait_until(
                lambda c=first_counter: _persisted_counter(redis_client, stream_prefix) == c + 1
            )
            assert _sample(registry, "gateway_serial_errors_total", kind="counter_gap") == 0
        modem.close()
        modem.listen()


def test_a_reboot_while_ingest_is_down_starts_a_new_sequence(
    modem: ModemServer, redis_url: str, redis_client: redis.Redis, stream_prefix: str
) -> None:
    stream = StreamKeys(stream_prefix).frames
    settings = _settings(modem.url, redis_url, stream_prefix)
    with running(settings):
        modem.accept()
        modem.send(_wire(_alp_frames(40, 3)))
        assert wait_until(lambda: _persisted_counter(redis_client, stream_prefix) == 42)
    modem.close()
    modem.listen()
    with running(settings) as (registry, _):
        modem.accept()
        modem.send(
            encode_frame(1, MessageType.REBOOTED, bytes([RebootReason.POWER_ON]))
            + _wire(_alp_frames(2, 2))
        )
        _wait_entries(redis_client, stream, 5)
        assert wait_until(lambda: _persisted_counter(redis_client, stream_prefix) == 3)
        assert _sample(registry, "gateway_serial_errors_total", kind="counter_gap") == 0


def test_counter_state_waits_for_its_frames_while_redis_is_away(
    modem: ModemServer, private_redis: Callable[..., PrivateRedis], stream_prefix: str
) -> None:
    # Not started yet; without persistence, a restarted server starts empty.
    redis_server = private_redis(appendfsync=None, start=False)
    stream = StreamKeys(stream_prefix).frames
    frames = _alp_frames(10, 5)
    settings = _settings(modem.url, redis_server.url, stream_prefix)
    client = redis.Redis.from_url(redis_server.url)
    try:
        with running(settings) as (registry, _):  # Redis not started yet
            modem.accept()
            modem.send(_wire(frames) + encode_frame(15, MessageType.LOGGING, b"x"))
            assert wait_until(
                lambda: _sample(registry, "gateway_ingest_buffered_frames") == len(frames)
            )
            redis_server.start()
            _assert_frames(_wait_entries(client, stream, len(frames)), frames)
            assert wait_until(lambda: _persisted_counter(client, stream_prefix) == 15)
            # a frame that is not streamed, with nothing queued: its state is written alone
            modem.send(encode_frame(16, MessageType.PING_RESPONSE, b"\x01"))
            assert wait_until(lambda: _persisted_counter(client, stream_prefix) == 16)
    finally:
        client.close()


def test_sink_writes_the_latest_counter_state_with_the_frames(
    redis_client: redis.Redis, stream_prefix: str
) -> None:
    keys = StreamKeys(stream_prefix)
    sink = FrameSink(
        redis_client,
        keys.frames,
        IngestMetrics(CollectorRegistry()),
        buffer_frames=100,
        batch_frames=2,
        backoff_max_s=0.1,
        state_key=keys.ingest_state,
    )
    for counter in range(5):
        sink.put(
            FrameEntry(alp=b"\x01", received_at=1.0 + counter, counter=counter),
            CounterState(counter, after_reboot=False, seen_at=1.0 + counter),
        )
    sink.note_state(CounterState(5, after_reboot=True, seen_at=6.5))
    sink.start()
    assert sink.stop(5.0) == 0
    assert redis_client.xlen(keys.frames) == 5
    assert _state(redis_client, stream_prefix) == {
        b"counter": b"5",
        b"after_reboot": b"1",
        b"seen_at": b"6.5",
    }
    expected = CounterState(5, after_reboot=True, seen_at=6.5)
    assert load_counter_state(redis_client, keys.ingest_state) == expected


def test_sink_records_each_frames_wait_for_redis(
    redis_client: redis.Redis, stream_prefix: str
) -> None:
    registry = CollectorRegistry()
    sink = FrameSink(
        redis_client,
        StreamKeys(stream_prefix).frames,
        IngestMetrics(registry),
        buffer_frames=100,
        batch_frames=100,
        backoff_max_s=0.1,
        clock=lambda: 100.0,  # when Redis accepts the batch
    )
    # received 0.4 ms before, 10 s before (a Redis outage), and "after" (the clock stepped back)
    for received_at in (99.9996, 90.0, 100.5):
        sink.put(FrameEntry(alp=b"\x01", received_at=received_at, counter=0))
    sink.start()
    assert sink.stop(5.0) == 0

    def bucket(le: str) -> float:
        return registry.get_sample_value("gateway_ingest_handoff_seconds_bucket", {"le": le}) or 0

    assert registry.get_sample_value("gateway_ingest_handoff_seconds_count") == 3
    assert registry.get_sample_value("gateway_ingest_handoff_seconds_sum") == pytest.approx(10.0004)
    assert bucket("0.00025") == 1  # the step back counts as no wait
    assert bucket("0.0005") == 2
    assert bucket("1.0") == 2
    assert bucket("10.0") == 3


def test_an_unreadable_counter_state_is_ignored(
    redis_client: redis.Redis, stream_prefix: str
) -> None:
    key = StreamKeys(stream_prefix).ingest_state
    assert load_counter_state(redis_client, key) is None
    redis_client.hset(key, mapping={"counter": "300", "after_reboot": "0", "seen_at": "1"})
    assert load_counter_state(redis_client, key) is None
    redis_client.hset(key, mapping={"counter": "x"})
    assert load_counter_state(redis_client, key) is None
    redis_client.delete(key)
    redis_client.set(key, b"not a hash")
    assert load_counter_state(redis_client, key) is None
