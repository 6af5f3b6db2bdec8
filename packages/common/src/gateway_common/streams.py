"""Names of the Redis keys and consumer groups that the services share.

These names are part of the published contract (docs/architecture.md): tools outside the code
depend on them, so they are built here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DECODER_GROUP", "ENTRY_FIELD", "PUBLISHER_GROUP", "StreamKeys", "entry_id_key"]

DECODER_GROUP = "decoder"
PUBLISHER_GROUP = "publisher"

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


def entry_id_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id (`millis-seq`, or `millis`) as a key that sorts in stream order."""
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)
