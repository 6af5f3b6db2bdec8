"""A downlink command and its states: validation and the transition function. Pure: no I/O.

A command sets a sensor's EnergyConfigFile (reporting interval, enabled) through the modem. Its
states (docs/architecture.md, "Downlink commands"):

    queued -> sent -> acknowledged -> confirmed
      |        |           |
      +--------+-----------+--> failed, expired          rejected (never queued)

- `queued`: accepted by a source (`gatewayctl config set`, or a DCMD through the publisher) and
  written to `{p}:commands`; waits for ingest and the modem.
- `sent`: ingest wrote it to the modem (again after an ingest restart: `attempts` counts the
  writes); the modem holds it until the sensor's next uplink.
- `acknowledged`: the modem completed the procedure without error (TagResponse with
  end-of-procedure): the sensor took the write.
- `confirmed`: the device's next EnergyConfigFile shows the new values (from `sent` too, when
  the acknowledgement itself was lost but the values arrived).
- `failed`: the modem reported an error, the device reported other values after acknowledging,
  or an operator cancelled it while queued.
- `expired`: no end within the command's timeout, counted from its creation while queued and
  from its last write once sent.
- `rejected`: refused by validation before anything was queued.

`apply(command, event)` is the one transition function: it returns the command as it is after
the event, or None when the event changes nothing (a final state absorbs every event). The
Redis side (command_store.py) applies its result only if the command did not change meanwhile.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from typing import Final, NamedTuple

__all__ = [
    "ALLOWED",
    "FINAL_STATES",
    "MAX_INTERVAL_S",
    "MIN_INTERVAL_S",
    "Answered",
    "Cancelled",
    "Command",
    "CommandError",
    "CommandState",
    "Event",
    "Expired",
    "Reported",
    "Sent",
    "apply",
    "cancel_refusal",
    "default_timeout_s",
    "validate_device_id",
    "validate_interval",
]

MIN_INTERVAL_S: Final = 10
MAX_INTERVAL_S: Final = 86_400
#: The default timeout: 3 x the device's reporting interval + this margin.
TIMEOUT_INTERVALS: Final = 3
TIMEOUT_MARGIN_S: Final = 60.0
#: A DEVICE_ID the gateway publishes: upper-case hex of an address, no zero padding (8 bytes at
#: most); protocol.md section 4.
_DEVICE_ID: Final = re.compile(r"^[0-9A-F]{1,16}$")


class CommandError(ValueError):
    """A command that cannot be accepted; the message is its rejection reason."""


class CommandState(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"


FINAL_STATES: Final = frozenset(
    {CommandState.CONFIRMED, CommandState.FAILED, CommandState.EXPIRED, CommandState.REJECTED}
)
#: Every change of state a command may make (a resend is `sent` -> `sent`).
ALLOWED: Final[dict[CommandState, frozenset[CommandState]]] = {
    CommandState.QUEUED: frozenset({CommandState.SENT, CommandState.FAILED, CommandState.EXPIRED}),
    CommandState.SENT: frozenset(
        {
            CommandState.SENT,
            CommandState.ACKNOWLEDGED,
            CommandState.CONFIRMED,
            CommandState.FAILED,
            CommandState.EXPIRED,
        }
    ),
    CommandState.ACKNOWLEDGED: frozenset(
        {CommandState.CONFIRMED, CommandState.FAILED, CommandState.EXPIRED}
    ),
    CommandState.CONFIRMED: frozenset(),
    CommandState.FAILED: frozenset(),
    CommandState.EXPIRED: frozenset(),
    CommandState.REJECTED: frozenset(),
}


def validate_device_id(device_id: str) -> str:
    """The DEVICE_ID, or CommandError saying why it cannot be one."""
    if not _DEVICE_ID.match(device_id):
        raise CommandError(f"not a DEVICE_ID: {device_id[:40]!r}")
    return device_id


def validate_interval(interval_s: object) -> int:
    """A reporting interval in whole seconds within 10 ... 86,400, or CommandError."""
    if isinstance(interval_s, bool) or not isinstance(interval_s, int):
        raise CommandError(f"interval must be a whole number of seconds, got {interval_s!r}")
    if not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S:
        raise CommandError(
            f"interval {interval_s} s is outside {MIN_INTERVAL_S} ... {MAX_INTERVAL_S} s"
        )
    return interval_s


def default_timeout_s(interval_s: float) -> float:
    """How long a command may take by default: 3 x the device's interval + 60 s."""
    return TIMEOUT_INTERVALS * interval_s + TIMEOUT_MARGIN_S


@dataclass(frozen=True, slots=True)
class Command:
    """One command as stored (command_store.py); `version` grows with every change."""

    id: str
    device_id: str
    interval_s: int
    enabled: bool
    source: str
    """Who asked: `gatewayctl` or `mqtt`."""
    state: CommandState
    created_at: float
    updated_at: float
    timeout_s: float
    deadline: float | None
    """When it expires (epoch seconds); None once it has ended."""
    reason: str = ""
    """Why it ended the way it did (or why it was refused)."""
    tag: int | None = None
    """The TagRequest id of its last write to the modem."""
    sent_at: float | None = None
    attempts: int = 0
    """Writes to the modem (more than one: ingest restarted while it was sent)."""
    responses: int = 0
    """Responses of the device the modem reported before its completion."""
    acknowledged_at: float | None = None
    ended_at: float | None = None
    entry_id: str | None = None
    """Its entry in `{p}:commands` (none for a rejected command)."""
    version: int = 0

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def values(self) -> tuple[int, bool]:
        return self.interval_s, self.enabled

    @classmethod
    def queued(
        cls,
        command_id: str,
        device_id: str,
        interval_s: int,
        enabled: bool,
        *,
        source: str,
        at: float,
        timeout_s: float,
    ) -> Command:
        return cls(
            id=command_id,
            device_id=device_id,
            interval_s=interval_s,
            enabled=enabled,
            source=source,
            state=CommandState.QUEUED,
            created_at=at,
            updated_at=at,
            timeout_s=timeout_s,
            deadline=at + timeout_s,
        )

    @classmethod
    def rejected(
        cls,
        command_id: str,
        device_id: str,
        reason: str,
        *,
        source: str,
        at: float,
        interval_s: int = 0,
        enabled: bool = False,
    ) -> Command:
        return cls(
            id=command_id,
            device_id=device_id,
            interval_s=interval_s,
            enabled=enabled,
            source=source,
            state=CommandState.REJECTED,
            created_at=at,
            updated_at=at,
            timeout_s=0.0,
            deadline=None,
            reason=reason,
            ended_at=at,
        )


# ------------------------------------------------------------------ events


class Sent(NamedTuple):
    """ingest wrote the command to the modem with this tag (again, after a restart)."""

    at: float
    tag: int


class Answered(NamedTuple):
    """The modem answered one of the command's tags (protocol.md 5.2)."""

    at: float
    end_of_procedure: bool
    error: bool
    tag: int | None = None
    """The tag answered; an error for a tag of an earlier write (written again since, after a
    restart or a modem reboot) says nothing about the write the modem holds now."""


class Reported(NamedTuple):
    """The device sent its EnergyConfigFile (received at `at`)."""

    at: float
    interval_s: int
    enabled: bool


class Expired(NamedTuple):
    """The clock reached `at`; the command expires if its deadline has passed."""

    at: float


class Cancelled(NamedTuple):
    """An operator withdrew the command."""

    at: float


Event = Sent | Answered | Reported | Expired | Cancelled


def _to(command: Command, state: CommandState, at: float, **changes: object) -> Command:
    ended = state in FINAL_STATES
    fields: dict[str, object] = {
        "state": state,
        "updated_at": at,
        "version": command.version + 1,
        **changes,
    }
    if ended:
        fields["deadline"] = None
        fields["ended_at"] = at
    return replace(command, **fields)  # type: ignore[arg-type]


def _expiry_reason(command: Command) -> str:
    limit = f"{command.timeout_s:g} s"
    if command.state is CommandState.QUEUED:
        return f"not sent within {limit} (the modem takes one command at a time)"
    if command.state is CommandState.SENT:
        return f"no answer from the device within {limit} of the last write"
    return f"acknowledged, but no EnergyConfigFile with the new values within {limit}"


def apply(command: Command, event: Event) -> Command | None:  # noqa: C901, PLR0911, PLR0912
    """The command after `event`, or None when the event changes nothing."""
    state = command.state
    if state in FINAL_STATES:
        return None
    match event:
        case Sent(at=at, tag=tag):
            if state not in (CommandState.QUEUED, CommandState.SENT):
                return None
            return _to(
                command,
                CommandState.SENT,
                at,
                tag=tag,
                sent_at=at,
                attempts=command.attempts + 1,
                deadline=at + command.timeout_s,
            )
        case Answered(at=at, end_of_procedure=eop, error=error, tag=tag):
            if state is not CommandState.SENT:
                return None  # late, or repeated: the procedure already ended
            if error and tag is not None and tag != command.tag:
                return None  # an earlier write's session ended; the latest one is pending
            if error:
                return _to(
                    command,
                    CommandState.FAILED,
                    at,
                    reason="the modem reports an error for this request (TagResponse error flag)",
                )
            if eop:
                return _to(command, CommandState.ACKNOWLEDGED, at, acknowledged_at=at)
            return replace(
                command, responses=command.responses + 1, updated_at=at, version=command.version + 1
            )
        case Reported(at=at, interval_s=interval_s, enabled=enabled):
            if state is CommandState.QUEUED or command.sent_at is None or at < command.sent_at:
                return None  # from before the write: says nothing about it
            if (interval_s, enabled) == command.values:
                return _to(command, CommandState.CONFIRMED, at)
            acknowledged_at = command.acknowledged_at
            if state is CommandState.ACKNOWLEDGED and acknowledged_at is not None:
                if at < acknowledged_at:
                    return None
                return _to(
                    command,
                    CommandState.FAILED,
                    at,
                    reason=f"the device reports interval {interval_s} s, "
                    f"{'enabled' if enabled else 'disabled'} after acknowledging",
                )
            return None  # sent: an uplink before the modem delivered the write
        case Expired(at=at):
            if command.deadline is None or at < command.deadline:
                return None
            return _to(command, CommandState.EXPIRED, at, reason=_expiry_reason(command))
        case Cancelled(at=at):
            if cancel_refusal(command) is not None:
                return None
            return _to(command, CommandState.FAILED, at, reason="cancelled by an operator")


def cancel_refusal(command: Command) -> str | None:
    """Why the command cannot be cancelled (None: it can, it is only queued)."""
    if command.state is CommandState.QUEUED:
        return None
    if command.final:
        return f"command {command.id} has ended ({command.state})"
    return (
        f"command {command.id} is {command.state}: the modem has it, so it ends as "
        "acknowledged, confirmed, failed or expired"
    )
