"""The bench's frames: energy readings whose phase-1 active energy is a sequence number, so
every DDATA names the frame it came from; and that number read back from a stream entry."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gateway_common.entries import Record, decode_frame, decode_record
from gateway_common.records import decode_alp
from gateway_dash7 import D7Status, EnergyFile, MessageType, encode_frame, encode_unsolicited
from gateway_devkit.bench.harness import BenchError

ROOT = Path(__file__).resolve().parents[5]
VECTORS = Path(os.environ.get("GATEWAY_VECTORS", str(ROOT / "tests" / "vectors" / "frames.json")))
DEVICES = 16
ACTIVE_PHASE_1 = "Énergie active/Phase 1"


def device_address(seq: int) -> bytes:
    return bytes.fromhex("be4c0b0000000000")[:7] + bytes((seq % DEVICES,))


def energy_alp(seq: int) -> bytes:
    """An EnergyFile whose phase-1 active energy is `seq`: each DDATA names its frame."""
    energy = EnergyFile(
        apparent_energy_vah=(1_234_567 + seq, 2_345_678, 3_456_789),
        active_energy_wh=(seq, 1_000_000, 2_000_000),
        current_ma=(1500, 1600, 1700),
        voltage_v=(230, 231, 229),
    )
    status = D7Status(address=device_address(seq), sequence=seq % 256)
    return encode_unsolicited(52, energy.encode(), status)


def serial_frames(first_seq: int, count: int, first_counter: int) -> list[tuple[int, bytes]]:
    return [
        (
            first_seq + i,
            encode_frame(
                (first_counter + i) % 256, MessageType.ALP_DATA, energy_alp(first_seq + i)
            ),
        )
        for i in range(count)
    ]


def vector_energy_alp() -> tuple[bytes, str]:
    """The test vector `energy_uid` (the issue's "energy frame"), or one built here."""
    try:
        cases = json.loads(VECTORS.read_text(encoding="utf-8"))["cases"]
        case = next(c for c in cases if c["name"] == "energy_uid")
        frame = bytes.fromhex(case["frame_hex"])
    except (OSError, ValueError, KeyError, StopIteration):
        return energy_alp(1), "energy frame built by the bench"
    return frame[7:], f"test vector energy_uid ({len(frame)} bytes on the line)"


def seq_of_record(data: bytes) -> tuple[int, str]:
    record = decode_record(data)
    value = record.fields["active_energy_wh"]
    assert isinstance(value, list)
    return value[0], record.frame_id


def seq_of_frame(data: bytes) -> tuple[int, float]:
    frame = decode_frame(data)
    outcome = decode_alp("0-0", frame.alp, frame.received_at)
    if not isinstance(outcome, Record):
        raise BenchError(f"a benchmark frame did not decode: {outcome.reason}")
    value = outcome.fields["active_energy_wh"]
    assert isinstance(value, list)
    return value[0], frame.received_at
