"""A hostile serial line: line noise, bit-flipped copies, malformed ALP behind a valid CRC,
unknown frame types, NBID/NOID senders, unknown files, through ingest, two decoders and the
publisher as processes.

Every good reading must be published exactly once with its values, every frame that passed the
CRC but cannot be a reading must be in `{p}:dead` exactly once with its raw ALP and a reason of
the right kind, nothing else may be published or dead-lettered, and no service may crash.
GATEWAY_HOSTILE_SEED replays a stream (the seed is printed and named in every failure).
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from gateway_common.entries import decode_dead_letter, decode_record
from gateway_common.streams import DECODER_GROUP, PUBLISHER_GROUP, StreamKeys
from gateway_dash7 import (
    ENERGY_FILE_ID,
    AddressType,
    D7Status,
    MessageType,
    encode_frame,
    encode_length_operand,
    encode_status_action,
    encode_unsolicited,
)

from .conftest import EDGE_NODE_ID, PROJECT_ID
from .readings import (
    alp_of,
    ddata_topic,
    expected_metrics,
    frame_of,
    ranges,
    reading,
    seq_of_ddata,
    status_of,
)
from .seeds import choose_seed

if TYPE_CHECKING:
    import redis

    from gateway_devkit.modem_line import ModemLine
    from gateway_devkit.mqtt_watch import MqttWatch
    from gateway_devkit.processes import Supervisor


pytestmark = [pytest.mark.integration, pytest.mark.system]

GOOD_READINGS = 300
MALFORMED = "malformed ALP: "

#: A malformed ALP command for reading `seq`: (its bytes, the start its dead letter's reason has).
Malformation = Callable[[int, random.Random], tuple[bytes, str]]


def _truncated(seq: int, rng: random.Random) -> tuple[bytes, str]:
    alp = alp_of(seq)
    return alp[: rng.randrange(1, len(alp))], MALFORMED


def _file_length_off_by_one(seq: int, rng: random.Random) -> tuple[bytes, str]:
    data = reading(seq)[1].encode()
    declared = len(data) + rng.choice((-1, 1))
    alp = bytes((0x20, ENERGY_FILE_ID, 0)) + encode_length_operand(declared) + data
    return alp + encode_status_action(status_of(seq)), MALFORMED


def _unknown_first_opcode(seq: int, rng: random.Random) -> tuple[bytes, str]:
    opcode = rng.choice([op for op in range(64) if op != 32])
    return bytes((opcode,)) + alp_of(seq)[1:], MALFORMED


def _unknown_second_action(seq: int, rng: random.Random) -> tuple[bytes, str]:
    alp = alp_of(seq)
    status_at = len(alp) - len(encode_status_action(status_of(seq)))
    header = rng.choice([op for op in range(64) if op != 34]) | 0x40
    return alp[:status_at] + bytes((header,)) + alp[status_at + 1 :], MALFORMED


def _wrong_interface(seq: int, _rng: random.Random) -> tuple[bytes, str]:
    alp = alp_of(seq)
    status_at = len(alp) - len(encode_status_action(status_of(seq)))
    return alp[: status_at + 1] + b"\xd6" + alp[status_at + 2 :], MALFORMED


def _status_len_mismatch(seq: int, rng: random.Random) -> tuple[bytes, str]:
    alp = bytearray(alp_of(seq))
    len_at = len(alp) - len(encode_status_action(status_of(seq))) + 2
    alp[len_at] = alp[len_at] + rng.choice((-1, 1, -8))
    return bytes(alp), MALFORMED


def _trailing_bytes(seq: int, rng: random.Random) -> tuple[bytes, str]:
    return alp_of(seq) + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5))), MALFORMED


def _operand_past_end(_seq: int, rng: random.Random) -> tuple[bytes, str]:
    # a length operand announcing extension bytes the command does not have
    return bytes((0x20, ENERGY_FILE_ID, 0x00, 0xC0 | rng.randrange(64))), MALFORMED


def _random_bytes(_seq: int, rng: random.Random) -> tuple[bytes, str]:
    first = rng.choice([b for b in range(256) if b & 0x3F != 32])
    return bytes((first, *(rng.randrange(256) for _ in range(rng.randrange(0, 250))))), MALFORMED


def _empty(_seq: int, _rng: random.Random) -> tuple[bytes, str]:
    return b"", MALFORMED


def _short_energy_file(seq: int, rng: random.Random) -> tuple[bytes, str]:
    data = reading(seq)[1].encode()[: rng.randrange(1, 67)]
    return encode_unsolicited(ENERGY_FILE_ID, data, status_of(seq)), "wrong EnergyFile length"


def _unknown_file(seq: int, _rng: random.Random) -> tuple[bytes, str]:
    data = reading(seq)[1].encode()
    return encode_unsolicited(64, data, status_of(seq)), "unknown file id 64"


def _sender(kind: AddressType, address: bytes) -> Malformation:
    def build(seq: int, _rng: random.Random) -> tuple[bytes, str]:
        status = D7Status(address=address, address_type=kind, sequence=seq % 256)
        return encode_unsolicited(ENERGY_FILE_ID, reading(seq)[1].encode(), status), (
            f"unattributable sender ({kind.name})"
        )

    return build


def _no_status(seq: int, _rng: random.Random) -> tuple[bytes, str]:
    file_part = alp_of(seq)[: -len(encode_status_action(status_of(seq)))]
    return file_part + b"\x62\xd7\x00", "unattributable sender (no status)"


def _partial_file(seq: int, rng: random.Random) -> tuple[bytes, str]:
    data = reading(seq)[1].encode()
    offset = rng.randrange(1, 60)
    return encode_unsolicited(ENERGY_FILE_ID, data, status_of(seq), offset), "partial file data"


MALFORMATIONS: tuple[Malformation, ...] = (
    _truncated,
    _file_length_off_by_one,
    _unknown_first_opcode,
    _unknown_second_action,
    _wrong_interface,
    _status_len_mismatch,
    _trailing_bytes,
    _operand_past_end,
    _random_bytes,
    _empty,
    _short_energy_file,
    _unknown_file,
    _sender(AddressType.NBID, b"\x07"),
    _sender(AddressType.NOID, b""),
    _no_status,
    _partial_file,
)

#: Frame types that are not ALP_DATA, valid CRC: ingest must log them and move on.
OTHER_TYPES = (0, 2, 3, 4, 5, 6, 7, 0x42, 0xFF)


def noise(rng: random.Random) -> bytes:
    """Line noise, sometimes with a false sync pair or a header-looking run in it."""
    out = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 24)))
    if rng.random() < 0.2:
        out += b"\xc0\x00" + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 6)))
    return out


def bit_flipped(frame: bytes, rng: random.Random) -> bytes:
    """A copy with one bit flipped anywhere but the counter byte.

    The CRC covers the payload only: a flip in the counter gives a valid frame, an undetectable
    duplicate (docs/guarantees.md). A flip in the type byte gives a frame of another type.
    """
    pos = rng.choice([i for i in range(len(frame)) if i != 2])
    return frame[:pos] + bytes((frame[pos] ^ (1 << rng.randrange(8)),)) + frame[pos + 1 :]


def hostile_stream(
    rng: random.Random,
) -> tuple[bytes, list[int], Counter[bytes], dict[bytes, str]]:
    """The bytes, the good reading numbers, the malformed ALPs sent (a multiset) and the reason
    each must get."""
    stream = encode_frame(1, MessageType.REBOOTED, b"\x00")
    good: list[int] = []
    malformed: Counter[bytes] = Counter()
    reasons: dict[bytes, str] = {}
    counter = 1
    for seq in range(GOOD_READINGS):
        counter = (counter + 1) % 256
        stream += noise(rng)
        frame = frame_of(seq)
        if rng.random() < 0.3:
            stream += bit_flipped(frame, rng)
        stream += frame
        good.append(seq)
        if rng.random() < 0.5:
            alp, reason = rng.choice(MALFORMATIONS)(seq + 10_000, rng)
            stream += noise(rng) + encode_frame(counter, MessageType.ALP_DATA, alp)
            malformed[alp] += 1
            reasons[alp] = reason
        if rng.random() < 0.15:
            kind = rng.choice(OTHER_TYPES)
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
            if kind == MessageType.LOGGING:
                payload = b"modem says hello"
            stream += encode_frame(counter, kind, payload)
    return stream + noise(rng), good, malformed, reasons


def write_in_random_chunks(line: ModemLine, data: bytes, rng: random.Random) -> None:
    pos = 0
    while pos < len(data):
        size = rng.choice((1, 2, 3, 7, 64, 300, 1000))
        line.write(data[pos : pos + size])
        pos += size
        if rng.random() < 0.2:
            time.sleep(0.002)


def test_hostile_line_loses_no_good_reading(
    gateway: Supervisor,
    modem_line: ModemLine,
    watch: MqttWatch,
    redis_client: redis.Redis,
    stream_prefix: str,
    topic_root: str,
) -> None:
    seed = choose_seed("GATEWAY_HOSTILE_SEED")
    tag = f"[seed {seed}]"
    print(f"\nhostile seed {seed} (GATEWAY_HOSTILE_SEED={seed} replays it)")
    rng = random.Random(seed)
    stream, good, malformed, reasons = hostile_stream(rng)

    start = gateway.start_service  # each with a health file of its own
    start("decoder-1", "gateway-decoder", GATEWAY_CONSUMER_NAME="decoder-1")
    start("decoder-2", "gateway-decoder", GATEWAY_CONSUMER_NAME="decoder-2")
    start("publisher", "gateway-publisher", GATEWAY_CONSUMER_NAME="publisher-1")
    start("ingest", "gateway-ingest", GATEWAY_SERIAL_PORT=modem_line.path, GATEWAY_LOG_LEVEL="info")
    gateway.wait_log("ingest", "serial_opened")
    started = time.monotonic()
    write_in_random_chunks(modem_line, stream, rng)

    keys = StreamKeys(stream_prefix)
    expected_dead = sum(malformed.values())

    def settled(messages: list[Any]) -> bool:
        published = {seq_of_ddata(m.topic, m.payload) for m in messages} - {None}
        return len(published) >= len(good) and redis_client.xlen(keys.dead) >= expected_dead

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # dead letters arrive without an MQTT message: poll
        if settled(watch.wait_for(settled, timeout_s=0.25)):
            break
    time.sleep(1.0)  # anything extra would arrive now
    messages = watch.wait_for(lambda _ms: True, timeout_s=0)
    elapsed = time.monotonic() - started
    gateway.check_alive()

    # ---- every good reading exactly once, with its values
    seqs = [seq for m in messages if (seq := seq_of_ddata(m.topic, m.payload)) is not None]
    counts = Counter(seqs)
    missing = set(good) - set(counts)
    assert not missing, f"{tag} good readings never published: {ranges(missing)}\n{gateway.logs()}"
    twice = {seq: n for seq, n in counts.items() if n > 1}
    assert not twice, f"{tag} readings published more than once: {twice}"
    assert set(counts) == set(good), f"{tag} unexpected readings {set(counts) - set(good)}"
    for message in messages:
        seq = seq_of_ddata(message.topic, message.payload)
        if seq is None:
            continue
        assert message.topic == ddata_topic(topic_root, PROJECT_ID, EDGE_NODE_ID, seq)
        got = message.json()["metrics"]
        assert [(m["name"], m["dataType"], m["value"]) for m in got] == expected_metrics(seq)

    # ---- every malformed frame dead-lettered once, with its raw ALP and a reason
    entries: Any = redis_client.xrange(keys.dead)
    letters = [decode_dead_letter(fields[b"d"]) for _id, fields in entries]
    assert Counter(letter.raw for letter in letters) == malformed, (
        f"{tag} dead letters do not match the malformed frames sent: "
        f"{len(letters)} letters for {expected_dead} frames"
    )
    wrong = [
        (letter.raw.hex(), letter.reason, reasons[letter.raw])
        for letter in letters
        if not letter.reason.startswith(reasons[letter.raw]) or letter.stage != "decoder"
    ]
    assert not wrong, f"{tag} dead letters with the wrong reason (raw, got, expected): {wrong[:5]}"
    assert all(letter.reason.strip() != MALFORMED.strip() for letter in letters), tag

    # ---- each accepted frame became one record or one dead letter; nothing pending
    frames = redis_client.xlen(keys.frames)
    records: Any = redis_client.xrange(keys.records)
    from_frames = Counter(decode_record(fields[b"d"]).frame_id for _id, fields in records)
    assert max(from_frames.values()) == 1, tag
    assert len(from_frames) + len(letters) == frames, (
        f"{tag} {frames} frames accepted, {len(from_frames)} records, {len(letters)} dead letters"
    )
    for stream_key, group in ((keys.frames, DECODER_GROUP), (keys.records, PUBLISHER_GROUP)):
        summary: Any = redis_client.xpending(stream_key, group)
        assert summary["pending"] == 0, f"{tag} {group}: {summary}"

    # ---- nothing crashed: every service stops cleanly, no traceback in any log
    codes = {name: gateway.stop(name, signal.SIGTERM) for name in list(gateway.latest)}
    assert codes == dict.fromkeys(codes, 0), f"{tag} exit codes {codes}\n{gateway.logs()}"
    logs = {name: service.log() for name, service in gateway.latest.items()}
    assert not [n for n, text in logs.items() if "Traceback" in text], f"{tag}\n{gateway.logs()}"
    framing_errors = logs["ingest"].count('"event": "framing_error"')
    other_types = logs["ingest"].count('"event": "unexpected_message_type"')
    assert framing_errors > 0, tag
    print(
        f"hostile seed {seed}: {len(stream)} bytes, {len(good)} good readings published once, "
        f"{expected_dead} malformed frames dead-lettered ({len(MALFORMATIONS)} malformations, "
        f"{len(set(reasons.values()))} reason kinds), "
        f"{framing_errors} framing errors, {other_types} frames of unexpected types, "
        f"{elapsed:.1f} s"
    )
