"""Names of the Redis keys and consumer groups that the services share.

These names are part of the published contract (docs/architecture.md): tools outside the code
depend on them, so they are built here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DECODER_GROUP",
    "ENTRY_FIELD",
    "INGEST_GROUP",
    "PUBLISHER_GROUP",
    "StreamKeys",
    "entry_id_key",
]

DECODER_GROUP = "decoder"
PUBLISHER_GROUP = "publisher"
INGEST_GROUP = "ingest"
"""The group in which ingest reads `{p}:commands`: its pending entries are the open commands."""

#: Every stream entry holds exactly one field, whose value is the msgpack-encoded entry.
ENTRY_FIELD = b"d"


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """The Redis keys of one gateway, all under the prefix `GATEWAY_STREAM_PREFIX`."""

    prefix: str

    @property
    def frames(self) -> str:
        """Complete, CRC-checked ALP_DATA frames, written by ingest."""
        return f"{self.prefix}:frames"

    @property
    def records(self) -> str:
        """Decoded records, written by the decoders."""
        return f"{self.prefix}:records"

    @property
    def dead(self) -> str:
        """Dead letters: what could not be decoded, attributed or published, with the reason."""
        return f"{self.prefix}:dead"

    @property
    def devices(self) -> str:
        """Hash of the devices the publisher has seen: device id -> msgpack registry entry."""
        return f"{self.prefix}:devices"

    @property
    def ingest_state(self) -> str:
        """Hash of ingest's modem counter state (`counter`, `after_reboot`, `seen_at`): the
        next ingest process counts the frames sent while none held the port."""
        return f"{self.prefix}:ingest:modem"

    # ---- downlink commands (gateway_common.commands, gateway_common.command_store)

    @property
    def commands(self) -> str:
        """Stream of accepted downlink commands, one entry each, read by ingest (group
        `ingest`); an entry stays pending until its command has ended."""
        return f"{self.prefix}:commands"

    def command(self, command_id: str) -> str:
        """Hash of one command: its values, state, reason, times, tag, attempts, version."""
        return f"{self.prefix}:command:{command_id}"

    @property
    def command_ids(self) -> str:
        """Sorted set of every stored command id, scored by its creation time (ms)."""
        return f"{self.prefix}:commands:ids"

    @property
    def command_seq(self) -> str:
        """The last command id given out (INCR)."""
        return f"{self.prefix}:commands:seq"

    @property
    def commands_open(self) -> str:
        """Sorted set of the commands not ended yet, scored by their deadline (epoch s)."""
        return f"{self.prefix}:commands:open"

    @property
    def commands_active(self) -> str:
        """Hash device id -> the id of its command the modem has or had (sent, acknowledged)."""
        return f"{self.prefix}:commands:active"

    @property
    def command_tags(self) -> str:
        """Hash TagRequest id -> the command last written to the modem with it."""
        return f"{self.prefix}:commands:tags"

    @property
    def command_states(self) -> str:
        """Hash state -> the number of commands in that state now."""
        return f"{self.prefix}:commands:states"

    @property
    def command_entered(self) -> str:
        """Hash state -> the number of commands that ever entered it (monotonic)."""
        return f"{self.prefix}:commands:entered"


def entry_id_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id (`millis-seq`, or `millis`) as a key that sorts in stream order."""
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)
