"""`gatewayctl replay`: decode the archived frames of a time range again and republish them.

`{p}:frames` keeps accepted frames (behind the decoder group, within the retention). A frame's
entry id is the time Redis accepted it, never earlier than its receive time but possibly much
later (frames ingest buffered through a Redis outage, requeued dead letters): so the scan starts
at the range's first millisecond and selects on the receive time each frame carries, to the end
of the archive. Each frame is decoded again with
the decoder's own function, and its record appended to `{p}:records` exactly as the decoder
would: same receive time (so the same DDATA timestamp, letting consumers deduplicate), same
frame id. Frames that do not decode are reported, not dead-lettered again; the modem's answers
to downlink commands are skipped (they are no readings, and their commands have ended).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from rich.markup import escape
from rich.table import Table

from gateway_common.entries import EntryError, Record, decode_frame, encode
from gateway_common.records import CommandAnswer, decode_entry
from gateway_common.streams import ENTRY_FIELD
from gateway_ctl.output import as_text, iso_time

if TYPE_CHECKING:
    import redis
    from rich.console import Console

    from gateway_common.streams import StreamKeys

__all__ = ["ReplayReport", "render_replay", "replay"]

_PAGE: Final = 500


@dataclass(frozen=True, slots=True)
class Replayed:
    frame_id: str
    record_id: str | None
    """The new `{p}:records` entry; None on a dry run."""
    device_id: str
    kind: str
    received_at: float


@dataclass(slots=True)
class ReplayReport:
    since_ms: int
    until_ms: int | None
    device_id: str | None
    dry_run: bool
    scanned: int = 0
    replayed: list[Replayed] = field(default_factory=list)
    other_devices: int = 0
    command_answers: int = 0
    """The modem's answers to downlink commands: not readings (one carrying a file is replayed
    as that file's record)."""
    undecodable: list[tuple[str, str]] = field(default_factory=list)
    """(frame id, reason)."""
    copies: int = 0
    """Frames identical to one already seen (same bytes, same receive time): a requeued dead
    letter, or a batch ingest wrote twice. One reading is replayed once."""
    archive_start: str | None = None
    """Id of the oldest frame the archive still holds."""

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "scanned": self.scanned,
            "replayed": len(self.replayed),
            "other_devices": self.other_devices,
            "command_answers": self.command_answers,
            "copies": self.copies,
            "undecodable": [{"frame_id": f, "reason": r} for f, r in self.undecodable],
            "archive_start": self.archive_start,
            "records": [
                {
                    "frame_id": r.frame_id,
                    "record_id": r.record_id,
                    "device_id": r.device_id,
                    "kind": r.kind,
                    "received_at": r.received_at,
                }
                for r in self.replayed
            ],
        }


def _append(client: redis.Redis, stream: str, records: list[tuple[str, Record]]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for _frame_id, record in records:
        pipe.xadd(stream, {ENTRY_FIELD: encode(record)})
    return [as_text(new_id) for new_id in pipe.execute()]


def _identity(frame_id: str, fields: dict[bytes, bytes]) -> tuple[float, bytes | str]:
    """(receive time in ms, what identifies the frame); an unreadable entry: by its id."""
    try:
        frame = decode_frame(fields[ENTRY_FIELD])
    except (KeyError, EntryError):
        return int(frame_id.split("-", maxsplit=1)[0]), frame_id
    return frame.received_at * 1000, frame.alp


def replay(
    client: redis.Redis,
    keys: StreamKeys,
    *,
    since_ms: int,
    until_ms: int | None,
    device_id: str | None = None,
    dry_run: bool = False,
) -> ReplayReport:
    """Re-decode the frames received in [since_ms, until_ms] and append their records."""
    report = ReplayReport(since_ms, until_ms, device_id, dry_run)
    oldest: Any = client.xrange(keys.frames, count=1)
    report.archive_start = as_text(oldest[0][0]) if oldest else None
    start = str(since_ms)
    seen: set[tuple[float, bytes | str]] = set()
    while True:
        page: Any = client.xrange(keys.frames, min=start, max="+", count=_PAGE)
        batch: list[tuple[str, Record]] = []
        for raw_id, fields in page:
            frame_id = as_text(raw_id)
            identity = _identity(frame_id, fields or {})
            received_ms = identity[0]
            if received_ms < since_ms or (until_ms is not None and received_ms >= until_ms + 1):
                continue
            if identity in seen:
                report.copies += 1
                continue
            seen.add(identity)
            report.scanned += 1
            outcome = decode_entry(frame_id, fields or {})
            if isinstance(outcome, CommandAnswer):
                if outcome.record is None:
                    report.command_answers += 1
                    continue
                outcome = outcome.record
            if not isinstance(outcome, Record):
                report.undecodable.append((frame_id, outcome.reason))
            elif device_id is not None and outcome.device_id != device_id:
                report.other_devices += 1
            else:
                batch.append((frame_id, outcome))
        new_ids: list[str | None] = (
            [None] * len(batch)
            if dry_run or not batch
            else list(_append(client, keys.records, batch))
        )
        report.replayed += [
            Replayed(frame_id, new_id, record.device_id, record.kind, record.received_at)
            for (frame_id, record), new_id in zip(batch, new_ids, strict=True)
        ]
        if len(page) < _PAGE:
            return report
        start = "(" + as_text(page[-1][0])


def _summary(report: ReplayReport) -> str:
    verb = "would replay" if report.dry_run else "replayed"
    line = f"{verb} {len(report.replayed)} of {report.scanned} frames"
    if report.device_id is not None:
        line += f" ({report.other_devices} of other devices)"
    if report.undecodable:
        line += f", {len(report.undecodable)} undecodable"
    if report.copies:
        line += f", {report.copies} archived copies skipped"
    if report.command_answers:
        line += f", {report.command_answers} command answers skipped"
    return line


def render_replay(report: ReplayReport, console: Console, *, verbose: bool) -> None:
    if verbose or report.dry_run:
        table = Table(title="would replay" if report.dry_run else "replayed", title_justify="left")
        for column in ("frame", "received at", "device", "kind", "new record"):
            table.add_column(column)
        for item in report.replayed:
            table.add_row(
                item.frame_id,
                iso_time(item.received_at),
                item.device_id,
                item.kind,
                item.record_id or "-",
            )
        console.print(table)
    for frame_id, reason in report.undecodable:
        console.print(f"[yellow]not replayed[/yellow] {frame_id}: {escape(reason)}")
    console.print(_summary(report))
    start = report.archive_start
    if start is None:
        console.print("[yellow]the frame archive is empty[/yellow]")
    elif int(start.split("-")[0]) > report.since_ms:
        at = iso_time(int(start.split("-")[0]) / 1000)
        console.print(f"[yellow]the archive starts at {at}: older frames are gone[/yellow]")
