"""Redis 7's append-only file read back as commands: what a power cut's truncation leaves.

Redis 7 keeps its AOF as several files in `appendonlydir/`: a manifest naming a base file (a
snapshot; RDB when `aof-use-rdb-preamble` is on, as by default) and the incr files appended
since, in order. Every write Redis acknowledged is a RESP command in the last incr file (a Lua
script's effects, a MULTI/EXEC pipeline: wrapped in MULTI ... EXEC; XADD with `*` written with
the id it got).

`loaded(commands, cut)` is what Redis applies when it loads the last file truncated at byte
`cut` with `aof-load-truncated yes`: every command complete before the cut, except a MULTI
block whose EXEC is not (Redis reverts an incomplete transaction). `stream_ids` replays the
commands that change a stream's entries, so a test can say which entries a truncation must
keep and which it must lose, and compare with what Redis loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

__all__ = [
    "AofError",
    "Command",
    "Manifest",
    "StreamId",
    "commands",
    "loaded",
    "parse_id",
    "stream_ids",
]

StreamId = tuple[int, int]


class AofError(ValueError):
    """Not an AOF this module understands (the message says where and why)."""


@dataclass(frozen=True)
class Command:
    args: tuple[bytes, ...]
    start: int
    """Byte offset of its first byte in its file."""
    end: int
    """Byte offset right after it: a cut at `end` or later keeps it whole."""

    @property
    def name(self) -> bytes:
        return self.args[0].upper()


@dataclass(frozen=True)
class Manifest:
    """`appendonly.aof.manifest`: the base file and the incr files, in the order Redis loads."""

    directory: Path
    base: str | None
    incr: tuple[str, ...]

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        base, incr = None, []
        (path,) = directory.glob("*.manifest")
        for line in path.read_text(encoding="utf-8").splitlines():
            words = line.split()
            fields = dict(zip(words[::2], words[1::2], strict=False))
            if fields.get("type") == "b":
                base = fields["file"]
            elif fields.get("type") == "i":
                incr.append(fields["file"])
        return cls(directory, base, tuple(incr))

    @property
    def last_incr(self) -> Path:
        if not self.incr:
            raise AofError(f"no incr file in {self.directory}")
        return self.directory / self.incr[-1]


def commands(data: bytes) -> Iterator[Command]:
    """The complete RESP commands of `data`, in order; a torn last command is left out."""
    position = 0
    while position < len(data):
        parsed = _command_at(data, position)
        if parsed is None:
            return
        yield parsed
        position = parsed.end


def _line_at(data: bytes, position: int, marker: bytes) -> tuple[int, int] | None:
    """(the number after `marker`, the offset after its CRLF); None if the line is torn."""
    end = data.find(b"\r\n", position)
    if end < 0:
        return None
    if data[position : position + 1] != marker:
        raise AofError(f"expected {marker!r} at byte {position}, got {data[position:end]!r}")
    return int(data[position + 1 : end]), end + 2


def _command_at(data: bytes, start: int) -> Command | None:
    header = _line_at(data, start, b"*")
    if header is None:
        return None
    count, position = header
    args = []
    for _ in range(count):
        length = _line_at(data, position, b"$")
        if length is None:
            return None
        size, position = length
        if position + size + 2 > len(data):
            return None
        args.append(data[position : position + size])
        position += size + 2
    return Command(tuple(args), start, position)


def loaded(file_commands: Iterable[Command], cut: int | None = None) -> list[Command]:
    """The commands Redis applies when it loads a file cut at byte `cut` (None: the whole file):
    the complete ones, a MULTI block only with its EXEC, without MULTI and EXEC themselves."""
    applied: list[Command] = []
    block: list[Command] | None = None
    for command in file_commands:
        if cut is not None and command.end > cut:
            break
        if command.name == b"MULTI":
            block = []
        elif command.name == b"EXEC":
            applied.extend(block or [])
            block = None
        elif block is not None:
            block.append(command)
        else:
            applied.append(command)
    return applied


def parse_id(raw: bytes) -> StreamId:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq or b"0")


def stream_ids(
    applied: Iterable[Command], key: bytes, start: Iterable[StreamId] = ()
) -> list[StreamId]:
    """The entry ids of stream `key` after `applied`, from the entries `start` (what the base
    file and the earlier incr files hold): XADD with its explicit id, XTRIM MINID/MAXLEN
    (exact), XDEL, DEL/UNLINK."""
    ids: list[StreamId] = sorted(start)
    for command in applied:
        name, rest = command.name, command.args[2:]
        if name in {b"DEL", b"UNLINK"} and key in command.args[1:]:
            ids = []
        elif len(command.args) < 2 or command.args[1] != key:
            continue
        elif name == b"XADD":
            if b"-" not in rest[0]:
                raise AofError(f"XADD with options is not modelled: {command.args!r}")
            ids.append(parse_id(rest[0]))
        elif name == b"XTRIM":
            ids = _trimmed(ids, command)
        elif name == b"XDEL":
            gone = {parse_id(raw) for raw in rest}
            ids = [i for i in ids if i not in gone]
    return ids


def _trimmed(ids: list[StreamId], command: Command) -> list[StreamId]:
    strategy, threshold = command.args[2].upper(), command.args[3]
    if threshold == b"~":
        raise AofError(f"approximate trimming is not modelled: {command.args!r}")
    if threshold == b"=":
        threshold = command.args[4]
    if strategy == b"MINID":
        bound = parse_id(threshold)
        return [i for i in ids if i >= bound]
    return ids[max(0, len(ids) - int(threshold)) :]
