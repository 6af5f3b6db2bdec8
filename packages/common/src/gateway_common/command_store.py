"""Where downlink commands live in Redis, and how their state changes atomically.

Every service that moves a command (a source creating it, ingest sending and expiring it, the
decoder acknowledging and confirming it, gatewayctl cancelling it) goes through `CommandStore`:

- `submit`: one Lua script stores the command (`{p}:command:{id}`), indexes it, counts it, and
  for a queued command appends its entry to `{p}:commands` in the same step, so a command is
  queued exactly when ingest can read it.
- `apply`: reads the command, computes its next state with the pure transition function
  (`gateway_common.commands.apply`) and writes it with a compare-and-set Lua script: the write
  happens only if the command's `version` is still the one read, together with every index
  (counts by state, the open set with deadlines, the device's active command, the tag owner)
  and, when the command ends, the acknowledgement of its `{p}:commands` entry. When two
  services race (the decoder confirming while ingest expires it), one write wins and the other
  reads again and decides again: a command never takes two final states, and no update is lost.

Keys are named in `gateway_common.streams.StreamKeys` (docs/architecture.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Final

from gateway_common.commands import Command, CommandState, Event, apply
from gateway_common.entries import CommandEntry, encode
from gateway_common.streams import ENTRY_FIELD, INGEST_GROUP

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import redis

    from gateway_common.streams import StreamKeys

__all__ = ["CommandStore", "Transition", "from_fields", "to_fields"]

#: Compare-and-set attempts before `apply` gives up (each loss means another service moved it).
_CAS_ATTEMPTS: Final = 20

# KEYS: command, ids, states, entered, open, stream.
# ARGV: id, state, created ms, deadline or '', entry ('' for none), entry field, field pairs...
# Returns the entry id ('' for none), or false when the id exists already.
_SUBMIT_LUA: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local pairs = {}
for i = 7, #ARGV do pairs[#pairs + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(pairs))
local entry = ''
if ARGV[5] ~= '' then
  entry = redis.call('XADD', KEYS[6], '*', ARGV[6], ARGV[5])
  redis.call('HSET', KEYS[1], 'entry_id', entry)
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1]) end
return entry
"""

# KEYS: command, states, entered, open, active, tags, stream.
# ARGV: id, expected version, old state, new state, deadline or '', device, entry id or '',
# tag or '', group, final 0/1, n, then n field/value pairs, then the fields to delete.
# Returns 1 when written, 0 when the command changed meanwhile (or is gone).
_UPDATE_LUA: Final = """
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[2] then return 0 end
local n = tonumber(ARGV[11])
local pairs = {}
for i = 12, 11 + 2 * n do pairs[#pairs + 1] = ARGV[i] end
if #pairs > 0 then redis.call('HSET', KEYS[1], unpack(pairs)) end
for i = 12 + 2 * n, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
if ARGV[3] ~= ARGV[4] then
  redis.call('HINCRBY', KEYS[2], ARGV[3], -1)
  redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
end
if ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
else
  redis.call('ZREM', KEYS[4], ARGV[1])
end
if ARGV[4] == 'sent' or ARGV[4] == 'acknowledged' then
  redis.call('HSET', KEYS[5], ARGV[6], ARGV[1])
elseif redis.call('HGET', KEYS[5], ARGV[6]) == ARGV[1] then
  redis.call('HDEL', KEYS[5], ARGV[6])
end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[6], ARGV[8], ARGV[1]) end
if ARGV[10] == '1' and ARGV[7] ~= '' then redis.call('XACK', KEYS[7], ARGV[9], ARGV[7]) end
return 1
"""

_FLOAT_FIELDS: Final = frozenset(
    {"created_at", "updated_at", "timeout_s", "deadline", "sent_at", "acknowledged_at", "ended_at"}
)
_INT_FIELDS: Final = frozenset({"interval_s", "tag", "attempts", "responses", "version"})
_FIELD_NAMES: Final = tuple(f.name for f in fields(Command))


def to_fields(command: Command) -> dict[str, str]:
    """The hash fields of a command (a field whose value is None is absent)."""
    out: dict[str, str] = {}
    for name in _FIELD_NAMES:
        value = getattr(command, name)
        if value is None:
            continue
        if isinstance(value, bool):
            out[name] = "1" if value else "0"
        elif isinstance(value, float):
            out[name] = repr(value)
        else:
            out[name] = str(value)
    return out


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def from_fields(raw: Mapping[Any, Any]) -> Command:
    """A command from its hash fields; ValueError when they cannot be one."""
    data = {_text(k): _text(v) for k, v in raw.items()}
    values: dict[str, Any] = {}
    try:
        for name in _FIELD_NAMES:
            text = data.get(name)
            if text is None:
                continue
            if name in _FLOAT_FIELDS:
                values[name] = float(text)
            elif name in _INT_FIELDS:
                values[name] = int(text)
            elif name == "enabled":
                values[name] = text == "1"
            elif name == "state":
                values[name] = CommandState(text)
            else:
                values[name] = text
        values.setdefault("deadline", None)
        return Command(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"unreadable command: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Transition:
    """A change `apply` wrote: the command before and after it."""

    before: Command
    after: Command

    @property
    def entered(self) -> CommandState | None:
        """The state the command entered, None when it kept its state (a resend, a response)."""
        return None if self.before.state is self.after.state else self.after.state


class CommandStore:
    """The commands of one gateway (`keys.prefix`), on one Redis client."""

    def __init__(self, client: redis.Redis, keys: StreamKeys) -> None:
        self._client = client
        self.keys = keys
        self._submit = client.register_script(_SUBMIT_LUA)
        self._update = client.register_script(_UPDATE_LUA)

    # ---- creating

    def next_id(self) -> str:
        """A new command id: 1, 2, 3, ... for the life of the gateway's Redis."""
        return str(int(self._client.incr(self.keys.command_seq)))

    def submit(self, command: Command) -> Command:
        """Store a new command (queued, or rejected); a queued one is appended to
        `{p}:commands` in the same step. Returns it with its entry id."""
        entry = b""
        if command.state is CommandState.QUEUED:
            entry = encode(
                CommandEntry(
                    command.id,
                    command.device_id,
                    command.interval_s,
                    command.enabled,
                    command.source,
                    command.created_at,
                )
            )
        pairs = [item for pair in to_fields(command).items() for item in pair]
        keys = self.keys
        reply: Any = self._submit(
            keys=[
                keys.command(command.id),
                keys.command_ids,
                keys.command_states,
                keys.command_entered,
                keys.commands_open,
                keys.commands,
            ],
            args=[
                command.id,
                command.state.value,
                math.floor(command.created_at * 1000),
                "" if command.deadline is None else repr(command.deadline),
                entry,
                ENTRY_FIELD,
                *pairs,
            ],
        )
        if reply is None:
            raise ValueError(f"command {command.id} exists already")
        entry_id = _text(reply)
        if not entry_id:
            return command
        return replace(command, entry_id=entry_id)

    # ---- reading

    def get(self, command_id: str) -> Command | None:
        """The command, None when there is none (or it cannot be read)."""
        raw: Any = self._client.hgetall(self.keys.command(command_id))
        if not raw:
            return None
        try:
            return from_fields(raw)
        except ValueError:
            return None

    def get_many(self, command_ids: Iterable[str]) -> list[Command]:
        """The commands that exist among these ids, in the order asked."""
        ids = list(command_ids)
        if not ids:
            return []
        pipe = self._client.pipeline(transaction=False)
        for command_id in ids:
            pipe.hgetall(self.keys.command(command_id))
        out: list[Command] = []
        for raw in pipe.execute():
            if raw:
                try:
                    out.append(from_fields(raw))
                except ValueError:
                    continue
        return out

    def listing(self, limit: int, *, newest_first: bool = True) -> tuple[int, list[Command]]:
        """(commands stored, up to `limit` of them, newest first unless told otherwise)."""
        total = int(self._client.zcard(self.keys.command_ids))
        if newest_first:
            ids: Any = self._client.zrevrange(self.keys.command_ids, 0, limit - 1)
        else:
            ids = self._client.zrange(self.keys.command_ids, 0, limit - 1)
        return total, self.get_many(_text(i) for i in ids)

    def open_ids(self, due_by: float | None = None) -> list[str]:
        """Commands not ended yet (only those whose deadline is at or before `due_by`)."""
        high: float | str = "+inf" if due_by is None else due_by
        ids: Any = self._client.zrangebyscore(self.keys.commands_open, "-inf", high)
        return [_text(i) for i in ids]

    def states(self) -> dict[str, int]:
        """The number of commands in each state now (every state, zeros included)."""
        return self._counts(self.keys.command_states)

    def entered(self) -> dict[str, int]:
        """The number of commands that ever entered each state."""
        return self._counts(self.keys.command_entered)

    def _counts(self, key: str) -> dict[str, int]:
        raw: Any = self._client.hgetall(key)
        counts = {state.value: 0 for state in CommandState}
        for name, value in raw.items():
            counts[_text(name)] = int(value)
        return counts

    def active(self, device_id: str) -> str | None:
        """The device's command the modem has or had (sent or acknowledged), if any."""
        value: Any = self._client.hget(self.keys.commands_active, device_id)
        return None if value is None else _text(value)

    def tag_owner(self, tag: int) -> str | None:
        """The command last written to the modem with this tag."""
        value: Any = self._client.hget(self.keys.command_tags, str(tag))
        return None if value is None else _text(value)

    def tags_in_use(self) -> dict[int, str]:
        """Tag -> the command last written with it."""
        raw: Any = self._client.hgetall(self.keys.command_tags)
        return {int(k): _text(v) for k, v in raw.items()}

    # ---- changing

    def apply(self, command_id: str, event: Event) -> Transition | None:
        """Apply `event` to the command (read, decide, compare-and-set, again on a race).

        None when the command does not exist or the event changes nothing.
        """
        for _ in range(_CAS_ATTEMPTS):
            before = self.get(command_id)
            if before is None:
                return None
            after = apply(before, event)
            if after is None:
                return None
            if self.write(before, after):
                return Transition(before, after)
        raise RuntimeError(f"command {command_id} kept changing under {type(event).__name__}")

    def write(self, before: Command, after: Command) -> bool:
        """Write `after` if the stored command is still `before` (same version)."""
        keys = self.keys
        new_fields = to_fields(after)
        pairs = [item for pair in new_fields.items() for item in pair]
        gone = [name for name in to_fields(before) if name not in new_fields]
        reply: Any = self._update(
            keys=[
                keys.command(after.id),
                keys.command_states,
                keys.command_entered,
                keys.commands_open,
                keys.commands_active,
                keys.command_tags,
                keys.commands,
            ],
            args=[
                after.id,
                str(before.version),
                before.state.value,
                after.state.value,
                "" if after.deadline is None else repr(after.deadline),
                after.device_id,
                after.entry_id or "",
                "" if after.tag is None or after.tag == before.tag else str(after.tag),
                INGEST_GROUP,
                "1" if after.final else "0",
                len(new_fields),
                *pairs,
                *gone,
            ],
        )
        return int(reply) == 1
