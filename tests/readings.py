"""Numbered energy readings for the fault and hostile-input tests.

Reading number `seq` carries `seq` as its active energy on phase 1, so every DDATA names the
frame it came from, and its other values are derived from `seq`: the test knows exactly what
each published message must contain, written out here independently of the publisher's code.
"""

from __future__ import annotations

import json
from typing import Any

from gateway_dash7 import (
    ENERGY_FILE_ID,
    D7Status,
    EnergyFile,
    MessageType,
    device_id,
    encode_frame,
    encode_unsolicited,
)

DEVICES = tuple(bytes((0x00, 0x0B, 0x57, 0x00, 0x00, 0x91, 0x51, d)) for d in range(5))
ACTIVE_1 = "Énergie active/Phase 1"


def reading(seq: int) -> tuple[bytes, EnergyFile, int]:
    """Reading number `seq`: its sender, its values, its link budget."""
    energy = EnergyFile(
        apparent_energy_vah=(3 * seq, 3 * seq + 1, -3 * seq),
        active_energy_wh=(seq, seq + 1, seq + 2),
        current_ma=(seq % 40_000, -(seq % 977), 7),
        voltage_v=(230, 231, seq % 300),
    )
    return DEVICES[seq % len(DEVICES)], energy, 20 + seq % 200


def status_of(seq: int) -> D7Status:
    address, _energy, link_budget = reading(seq)
    return D7Status(address=address, link_budget=link_budget, sequence=seq % 256)


def alp_of(seq: int) -> bytes:
    """The ALP command of reading `seq`: ReturnFileData of the EnergyFile, then the status."""
    return encode_unsolicited(ENERGY_FILE_ID, reading(seq)[1].encode(), status_of(seq))


def frame_of(seq: int) -> bytes:
    """The serial frame of reading `seq` (modem counter seq + 1, wrapping)."""
    return encode_frame((seq + 1) % 256, MessageType.ALP_DATA, alp_of(seq))


def ddata_topic(topic_root: str, project_id: str, edge_node_id: str, seq: int) -> str:
    return f"{topic_root}/{project_id}/DDATA/{edge_node_id}/{device_id(reading(seq)[0])}"


def expected_metrics(seq: int) -> list[tuple[str, str, Any]]:
    """(name, dataType, value) of the DDATA of reading `seq`, in order (protocol.md 4)."""
    _address, e, link_budget = reading(seq)
    groups = (
        ("Énergie apparente", "Long", e.apparent_energy_vah),
        ("Énergie active", "Long", e.active_energy_wh),
        ("Intensité", "Integer", e.current_ma),
        ("Tension", "Short", e.voltage_v),
    )
    return [
        *(
            (f"{name}/Phase {p}", kind, v)
            for name, kind, vs in groups
            for p, v in zip((1, 2, 3), vs, strict=True)
        ),
        ("Force du signal radio DASH7", "Short", link_budget),
        ("État de la liaison Modbus - DASH7", "Boolean", True),
    ]


def seq_of_ddata(topic: str, payload: bytes) -> int | None:
    """The reading number a DDATA carries; None for any other topic."""
    if "/DDATA/" not in topic:
        return None
    for metric in json.loads(payload)["metrics"]:
        if metric["name"] == ACTIVE_1:
            return int(metric["value"])
    raise AssertionError(f"DDATA without {ACTIVE_1}: {payload!r}")


def ranges(seqs: set[int] | list[int]) -> str:
    """`1-5,9,12-13`: a compact view of a set of reading numbers."""
    spans: list[list[int]] = []
    for seq in sorted(seqs):
        if spans and spans[-1][1] == seq - 1:
            spans[-1][1] = seq
        else:
            spans.append([seq, seq])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans) or "none"
