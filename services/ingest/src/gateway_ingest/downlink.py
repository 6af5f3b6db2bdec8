"""ingest's downlink: the commands of `{p}:commands` to the modem, one at a time.

ingest owns the port, so it is the one writer to the modem. Its own thread reads the commands
(consumer group `ingest`), keeps a queue per device, and writes each command's request
(protocol.md section 5: TagRequest + Forward over D7ASP + WriteFileData of the EnergyConfigFile)
as an ALP_DATA frame with the host's own frame counter. The serial reads never wait on it: the
reader is another thread, and each write gives up after the write timeout (serial_link.py).

- **One request in the modem at a time** (`GATEWAY_DOWNLINK_MAX_IN_FLIGHT`, default 1): the
  Sub-IoT modem keeps a single master session and rejects a request to another addressee while
  one is pending. So ingest follows the modem's sessions itself, by tag, from what it reads on
  the line: a session opens when a request is written and closes when the modem's completion
  for that tag comes back (`A3 tt` or `E3 tt`, whatever the command's state by then), or, if
  that frame was lost, once the request's dormant timeout (plus a margin) has passed. Every
  write has a tag of its own, so a request written again is told from the earlier one. A device
  has at most one command sent or acknowledged: its next one waits until that one has ended.
- **No ping, ever**: a PING_REQUEST frees every ALP command pending in the modem; ingest writes
  no frame but these requests.
- **The addressee** is the device's address (UID: its DEVICE_ID left-padded to 8 bytes; VID for
  2-byte ids) with the access class and NLS method of its last D7 status, which the registry
  keeps (`GATEWAY_DOWNLINK_ACCESS_CLASS` overrides the access class); **the dormant timeout** is
  the smallest compressed time of at least twice the device's reporting interval, so the modem
  still holds the request when one uplink is missed.
- **Restarts**: an entry of `{p}:commands` stays pending in the group until its command has
  ended (the transition script acknowledges it), so a new ingest finds every open command in
  its pending entries. A command found `sent` may or may not have reached the modem: it is
  written again under a new tag (the write is idempotent) and counted (`attempts`, and
  `gateway_commands_resent_total`). So is every command in the modem when it reboots (the modem
  lost its sessions).
- **Expiry** is ingest's: every turn it expires the open commands whose deadline has passed,
  whoever queued them (docs/architecture.md says why).
"""

from __future__ import annotations

import math
import queue
import random
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from redis.exceptions import RedisError

from gateway_common.backoff import Backoff
from gateway_common.commands import Command, CommandState, Expired, Sent
from gateway_common.devices import DEFAULT_INTERVAL_S, DeviceEntry, RegistryError
from gateway_common.entries import EntryError, decode_command
from gateway_common.logs import get_logger
from gateway_common.redis_conn import ensure_group
from gateway_common.redis_refusals import refusal_of
from gateway_common.streams import ENTRY_FIELD, INGEST_GROUP
from gateway_dash7 import (
    ENERGY_CONFIG_FILE_ID,
    MAX_COMPRESSED_TIME_S,
    Addressee,
    AddressType,
    AlpError,
    EnergyConfigFile,
    InterfaceConfiguration,
    MessageType,
    ModemAnswer,
    NlsMethod,
    ResponseMode,
    WriteRequest,
    compress_time,
    encode_frame,
    next_counter,
    parse_received,
)
from gateway_ingest.serial_link import PortLostError, WriteTimeoutError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import redis

    from gateway_common.command_metrics import CommandMetrics
    from gateway_common.command_store import CommandStore
    from gateway_common.health import Health
    from gateway_common.lifecycle import StopSignal
    from gateway_ingest.metrics import IngestMetrics

__all__ = ["CONSUMER", "Downlink", "addressee_for", "dormant_timeout", "request_for"]

log = get_logger(__name__)

CONSUMER: Final = "ingest"
"""ingest's consumer name in group `ingest` (one ingest per gateway)."""
#: What the energy sensors use when the registry does not know yet (issue 12).
DEFAULT_ACCESS_CLASS: Final = 0x01
DEFAULT_NLS_METHOD: Final = NlsMethod.AES_CTR
_VID_DIGITS: Final = 4
_READ_BATCH: Final = 100
_TAGS: Final = 256
#: A modem session whose completion never came is taken as over this long after its dormant
#: timeout (the modem ends it then, with the error flag; that frame may have been lost).
SESSION_MARGIN_S: Final = 30.0


def dormant_timeout(interval_s: float) -> int:
    """The compressed dormant timeout for a device reporting every `interval_s`: the smallest
    encodable time of at least twice the interval (one missed uplink is tolerated)."""
    return compress_time(min(math.ceil(2 * interval_s), MAX_COMPRESSED_TIME_S))


def addressee_for(
    device_id: str, device: DeviceEntry | None, access_class: int | None = None
) -> Addressee:
    """The addressee of a command to `device_id`, from what its last D7 status said."""
    addressing = None if device is None else device.addressing
    if addressing is not None and addressing.address_type in (AddressType.UID, AddressType.VID):
        address_type = AddressType(addressing.address_type)
    else:
        address_type = AddressType.VID if len(device_id) <= _VID_DIGITS else AddressType.UID
    size = 2 if address_type is AddressType.VID else 8
    return Addressee(
        address=int(device_id, 16).to_bytes(size, "big"),
        address_type=address_type,
        access_class=(
            access_class
            if access_class is not None
            else (DEFAULT_ACCESS_CLASS if addressing is None else addressing.access_class)
        ),
        nls_method=DEFAULT_NLS_METHOD if addressing is None else addressing.nls_method,
    )


def request_for(
    command: Command,
    device: DeviceEntry | None,
    tag: int,
    *,
    access_class: int | None = None,
    default_interval_s: float = DEFAULT_INTERVAL_S,
) -> WriteRequest:
    """The request that writes `command`'s EnergyConfigFile to its device."""
    interval_s = (device.interval_s if device is not None else None) or default_interval_s
    return WriteRequest(
        tag_id=tag,
        configuration=InterfaceConfiguration(
            addressee=addressee_for(command.device_id, device, access_class),
            dormant_timeout=dormant_timeout(interval_s),
            response_mode=ResponseMode.ANY,
        ),
        file_id=ENERGY_CONFIG_FILE_ID,
        data=EnergyConfigFile(command.interval_s, command.enabled).encode(),
    )


def _id_order(command: Command) -> tuple[int, str]:
    """Oldest first: ids are 1, 2, 3, ... (decimal strings)."""
    return len(command.id), command.id


class Downlink:
    """The commands' way to the modem; `run` in a thread of its own until `stop`."""

    def __init__(
        self,
        client: redis.Redis,
        store: CommandStore,
        port_write: Callable[[bytes], None],
        metrics: IngestMetrics,
        command_metrics: CommandMetrics,
        *,
        health: Health,
        max_in_flight: int = 1,
        access_class: int | None = None,
        default_interval_s: float = DEFAULT_INTERVAL_S,
        block_ms: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._store = store
        self._keys = store.keys
        self._port_write = port_write
        self._metrics = metrics
        self._command_metrics = command_metrics
        self._health = health
        self._max_in_flight = max_in_flight
        self._access_class = access_class
        self._default_interval_s = default_interval_s
        self._block_ms = block_ms
        self._clock = clock
        self._queued: dict[str, Command] = {}
        self._sent: dict[str, Command] = {}
        """In state sent: the modem has them (or will, once `_unwritten` are written)."""
        self._acknowledged: dict[str, Command] = {}
        """Acknowledged, waiting for the device's EnergyConfigFile: the device is busy."""
        self._unwritten: dict[str, str] = {}
        """Commands in state sent not (known to be) in the modem -> why they are written again."""
        self._sessions: dict[int, tuple[str, float]] = {}
        """The modem's open sessions: tag -> (command id, when it is taken as over, monotonic)."""
        self._completed: queue.SimpleQueue[int] = queue.SimpleQueue()
        """Tags whose completion the reader saw on the line."""
        self._counter = 0
        """The host's own frame counter (uint8): the next frame carries it."""
        self._next_tag = random.randrange(_TAGS)
        self._rebooted = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- from the reader thread

    def note_reboot(self) -> None:
        """The modem rebooted: it lost the commands it held; write them again."""
        self._rebooted.set()

    def note_frame(self, alp: bytes) -> None:
        """An ALP_DATA frame from the modem (reader thread): a completion closes a session."""
        try:
            received = parse_received(alp)
        except AlpError:
            return  # the decoder dead-letters it; nothing the modem's sessions depend on
        if isinstance(received, ModemAnswer) and received.end_of_procedure:
            self._completed.put(received.tag_id)

    # ---- lifecycle

    def start(self, stop: StopSignal) -> None:
        self._thread = threading.Thread(target=self.run, args=(stop,), name="downlink", daemon=True)
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def run(self, stop: StopSignal) -> None:
        backoff = Backoff(initial_s=0.1, max_s=5.0)
        setup_needed = True
        while not stop.is_set():
            try:
                if setup_needed:
                    self._setup()
                    setup_needed = False
                self.turn()
                backoff.reset()
                self._health.clear("downlink")
            except RedisError as exc:
                delay = backoff.next_delay()
                log.warning(
                    "downlink_redis_error", error=str(exc)[:200], retry_in_s=round(delay, 2)
                )
                refusal = refusal_of(exc)
                reason = f"Redis: {type(exc).__name__}" if refusal is None else refusal.text
                self._health.problem("downlink", reason, restart_helps=False)
                setup_needed = True
                stop.wait(delay)
            except Exception:  # the loop's boundary: a bug must not end the downlink for good
                log.exception("downlink_crashed")
                self._health.problem("downlink", "the downlink failed unexpectedly")
                setup_needed = True
                stop.wait(backoff.next_delay())
        log.info("downlink_stopped", queued=len(self._queued), sent=len(self._sent))

    # ---- one turn

    def turn(self, block_ms: int | None = None) -> None:
        """Expire, catch up with the states, write what may go, then read new commands."""
        now = self._clock()
        self._expire(now)
        self._refresh()
        self._close_sessions()
        if self._rebooted.is_set():
            self._rebooted.clear()
            self._sessions.clear()
            for command_id in self._sent:
                self._unwritten.setdefault(command_id, "modem_rebooted")
        self._write_ready(now)
        self._command_metrics.in_flight.set(len(self._sessions))
        self._command_metrics.set_totals(self._store.entered())
        wait = self._block_ms if block_ms is None else block_ms
        self._read(">", block_ms=wait or None)

    def _close_sessions(self) -> None:
        """Sessions the modem completed, or that are taken as over (dormant timeout passed)."""
        while True:
            try:
                tag = self._completed.get_nowait()
            except queue.Empty:
                break
            closed = self._sessions.pop(tag, None)
            if closed is not None:
                log.debug("modem_session_completed", tag=tag, command_id=closed[0])
        clock = time.monotonic()
        for tag, (command_id, over_at) in list(self._sessions.items()):
            if clock >= over_at:
                del self._sessions[tag]
                log.warning("modem_session_assumed_over", tag=tag, command_id=command_id)

    def _setup(self) -> None:
        """The group, then every open command this ingest's group has pending."""
        ensure_group(self._client, self._keys.commands, INGEST_GROUP)
        self._queued.clear()
        self._sent.clear()
        self._acknowledged.clear()
        self._unwritten.clear()
        cursor = "0"
        while True:
            entries = self._read(cursor, block_ms=None, recovering=True)
            if not entries:
                break
            cursor = entries[-1]
        log.info(
            "downlink_started",
            queued=len(self._queued),
            sent=len(self._sent),
            acknowledged=len(self._acknowledged),
            max_in_flight=self._max_in_flight,
        )

    def _read(self, start: str, *, block_ms: int | None, recovering: bool = False) -> list[str]:
        """Read entries (new ones with `>`, or pending ones after an id); their ids."""
        reply: Any = self._client.xreadgroup(
            INGEST_GROUP,
            CONSUMER,
            {self._keys.commands: start},
            count=_READ_BATCH,
            block=block_ms,
        )
        ids: list[str] = []
        for _stream, items in reply or []:
            for raw_id, fields in items:
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                ids.append(entry_id)
                self._take(entry_id, fields or {}, recovering=recovering)
        return ids

    def _take(self, entry_id: str, fields: Mapping[bytes, bytes], *, recovering: bool) -> None:
        try:
            entry = decode_command(fields.get(ENTRY_FIELD, b""))
        except EntryError as exc:
            log.warning("command_entry_unreadable", entry_id=entry_id, error=str(exc))
            self._client.xack(self._keys.commands, INGEST_GROUP, entry_id)
            return
        command = self._store.get(entry.command_id)
        if command is None or command.final:
            self._client.xack(self._keys.commands, INGEST_GROUP, entry_id)
            return
        self._file(command)
        if command.state is CommandState.SENT and recovering:
            self._unwritten[command.id] = "ingest_restarted"
        if not recovering:
            log.info(
                "command_received",
                command_id=command.id,
                device_id=command.device_id,
                interval_s=command.interval_s,
                enabled=command.enabled,
                source=command.source,
            )

    def _forget(self, command_id: str) -> None:
        for held in (self._queued, self._sent, self._acknowledged):
            held.pop(command_id, None)
        self._unwritten.pop(command_id, None)

    def _file(self, command: Command) -> None:
        """Keep `command` where its state says (or drop it once it has ended)."""
        for held in (self._queued, self._sent, self._acknowledged):
            held.pop(command.id, None)
        if command.state is CommandState.QUEUED:
            self._queued[command.id] = command
        elif command.state is CommandState.SENT:
            self._sent[command.id] = command
        elif command.state is CommandState.ACKNOWLEDGED:
            self._acknowledged[command.id] = command
        if command.state is not CommandState.SENT:
            self._unwritten.pop(command.id, None)

    def _refresh(self) -> None:
        """Catch up with the changes others made (the decoder, gatewayctl cancel)."""
        held = [*self._queued.values(), *self._sent.values(), *self._acknowledged.values()]
        if not held:
            return
        pipe = self._client.pipeline(transaction=False)
        for command in held:
            pipe.hget(self._keys.command(command.id), "version")
        for command, version in zip(held, pipe.execute(), strict=True):
            if version is not None and int(version) == command.version:
                continue
            now = self._store.get(command.id)
            if now is None:  # deleted under us: nothing to do for it any more
                self._forget(command.id)
                continue
            if now.state is not command.state:
                log.info(
                    "command_state_seen",
                    command_id=now.id,
                    device_id=now.device_id,
                    state=str(now.state),
                    reason=now.reason,
                )
            self._file(now)

    def _expire(self, now: float) -> None:
        for command_id in self._store.open_ids(due_by=now):
            done = self._store.apply(command_id, Expired(now))
            if done is None:
                continue
            command = done.after
            log.warning(
                "command_expired",
                command_id=command.id,
                device_id=command.device_id,
                was=str(done.before.state),
                reason=command.reason,
                attempts=command.attempts,
            )
            self._file(command)

    # ---- writing

    def _busy_devices(self) -> set[str]:
        return {c.device_id for c in (*self._sent.values(), *self._acknowledged.values())}

    def _write_ready(self, now: float) -> None:
        """Write what the modem has room for: commands to write again first, then the oldest
        queued one of each device that has none sent or acknowledged."""
        again = [(self._sent.get(cid), why) for cid, why in self._unwritten.items()]
        waiting = [(c, why) for c, why in again if c is not None]
        busy = self._busy_devices()
        for command in sorted(self._queued.values(), key=_id_order):
            if command.device_id not in busy:
                waiting.append((command, ""))
                busy.add(command.device_id)
        for command, why in waiting:
            if len(self._sessions) >= self._max_in_flight:
                return
            tag = self._allocate_tag()
            if tag is None:
                log.warning("downlink_no_free_tag", sessions=len(self._sessions))
                return
            self._write(command, tag, now, why)

    def _allocate_tag(self) -> int | None:
        """A tag neither an open session nor an open command of this gateway uses, rotating so
        that a tag comes back as late as possible (a late answer must not find a newer command
        under it)."""
        used = {
            c.tag for c in (*self._sent.values(), *self._acknowledged.values()) if c.tag is not None
        }
        used.update(self._sessions)
        for offset in range(_TAGS):
            tag = (self._next_tag + offset) % _TAGS
            if tag not in used:
                self._next_tag = (tag + 1) % _TAGS
                return tag
        return None

    def _device(self, device_id: str) -> DeviceEntry | None:
        raw: Any = self._client.hget(self._keys.devices, device_id)
        if raw is None:
            return None
        try:
            return DeviceEntry.from_bytes(raw)
        except RegistryError:
            return None

    def _write(self, command: Command, tag: int, now: float, again: str) -> None:
        """Mark the command sent, then write its request to the modem."""
        device = self._device(command.device_id)
        request = request_for(
            command,
            device,
            tag,
            access_class=self._access_class,
            default_interval_s=self._default_interval_s,
        )
        done = self._store.apply(command.id, Sent(now, tag))
        if done is None:  # ended meanwhile (cancelled, expired)
            current = self._store.get(command.id)
            if current is not None:
                self._file(current)
            return
        sent = done.after
        self._file(sent)
        frame = encode_frame(self._counter, MessageType.ALP_DATA, request.encode())
        counter, self._counter = self._counter, next_counter(self._counter)
        try:
            self._port_write(frame)
        except (PortLostError, WriteTimeoutError) as exc:
            kind = "timeout" if isinstance(exc, WriteTimeoutError) else "port"
            self._metrics.command_write_errors.labels(kind=kind).inc()
            self._unwritten[sent.id] = again or "write_failed"
            log.warning(
                "command_write_failed",
                command_id=sent.id,
                device_id=sent.device_id,
                error=str(exc),
                kind=kind,
            )
            return
        self._unwritten.pop(sent.id, None)
        over_at = time.monotonic() + request.configuration.dormant_timeout_s + SESSION_MARGIN_S
        self._sessions[tag] = (sent.id, over_at)
        self._metrics.commands_written.inc()
        if again:
            self._metrics.commands_resent.labels(reason=again).inc()
        configuration = request.configuration
        log.info(
            "command_sent",
            command_id=sent.id,
            device_id=sent.device_id,
            interval_s=sent.interval_s,
            enabled=sent.enabled,
            tag=tag,
            attempt=sent.attempts,
            again=again or None,
            counter=counter,
            dormant_timeout_s=configuration.dormant_timeout_s,
            access_class=configuration.addressee.access_class,
            nls_method=configuration.addressee.nls_method,
            alp=request.encode().hex(),
        )
