"""The downlink codec: the compressed time, the host's tagged write request (the issue's example
byte for byte) and the modem's answers in either order; builders and parsers both ways."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_dash7 import (
    ENERGY_CONFIG_FILE_ID,
    MAX_COMPRESSED_TIME_S,
    Addressee,
    AddressType,
    AlpError,
    D7Status,
    EnergyConfigFile,
    FileData,
    InterfaceConfiguration,
    ModemAnswer,
    NlsMethod,
    ResponseMode,
    UnsolicitedMessage,
    WriteRequest,
    compress_time,
    decompress_time,
    encode_unsolicited,
    parse_answer,
    parse_received,
)

UID = bytes.fromhex("323636300039004C")
#: docs/protocol.md section 5 (issue 12): UID 32 36 36 30 00 39 00 4C, tag 0x2A, 600 s enabled,
#: access class 0x01 with AES-CTR, dormant timeout 1,216 s.
EXAMPLE = bytes.fromhex(
    "B4 2A 32 D7 02 73 21 01 32 36 36 30 00 39 00 4C 04 3E 00 05 58 02 00 00 01"
)


def example_request() -> WriteRequest:
    return WriteRequest(
        tag_id=0x2A,
        configuration=InterfaceConfiguration(
            addressee=Addressee(UID, AddressType.UID, 0x01, NlsMethod.AES_CTR),
            dormant_timeout=compress_time(2 * 600),
            response_mode=ResponseMode.ANY,
        ),
        file_id=ENERGY_CONFIG_FILE_ID,
        data=EnergyConfigFile(600, enabled=True).encode(),
    )


# ------------------------------------------------------------------ compressed time


@pytest.mark.parametrize(
    ("seconds", "byte", "actual_s"),
    [
        (0, 0x00, 0),
        (1, 0x01, 1),
        (31, 0x1F, 31),
        (32, 0x28, 32),
        (33, 0x29, 36),
        (124, 0x3F, 124),
        (125, 0x48, 128),
        (1200, 0x73, 1216),
        (1216, 0x73, 1216),
        (1217, 0x74, 1280),
        (MAX_COMPRESSED_TIME_S, 0xFF, 507_904),
    ],
)
def test_compressed_time_examples(seconds: int, byte: int, actual_s: int) -> None:
    assert compress_time(seconds) == byte
    assert decompress_time(byte) == actual_s


@pytest.mark.parametrize("seconds", [-1, MAX_COMPRESSED_TIME_S + 1])
def test_compressed_time_out_of_range(seconds: int) -> None:
    with pytest.raises(ValueError, match="cannot be a compressed time"):
        compress_time(seconds)


_ALL_TIMES = sorted({decompress_time(b) for b in range(256)})


@given(st.integers(0, MAX_COMPRESSED_TIME_S))
def test_compressed_time_is_the_smallest_encodable_at_least_the_request(seconds: int) -> None:
    encoded = decompress_time(compress_time(seconds))
    assert encoded >= seconds
    assert not [t for t in _ALL_TIMES if seconds <= t < encoded]


# ------------------------------------------------------------------ the request


def test_the_issues_example_is_built_byte_for_byte() -> None:
    assert example_request().encode() == EXAMPLE
    assert example_request().configuration.dormant_timeout_s == 1216


def test_the_issues_example_parses_back() -> None:
    assert WriteRequest.parse(EXAMPLE) == example_request()


def test_a_vid_addressee() -> None:
    request = example_request()._replace(
        configuration=InterfaceConfiguration(
            Addressee(b"\xab\xcd", AddressType.VID, 0x21, NlsMethod.NONE), dormant_timeout=0x10
        )
    )
    raw = request.encode()
    assert raw[:11] == bytes.fromhex("B4 2A 32 D7 02 10 30 21 AB CD 04")
    assert WriteRequest.parse(raw) == request


addressees = st.builds(
    lambda kind, address, access_class, nls: Addressee(
        address[: {AddressType.NOID: 0, AddressType.UID: 8, AddressType.VID: 2}[kind]],
        kind,
        access_class,
        nls,
    ),
    st.sampled_from([AddressType.NOID, AddressType.UID, AddressType.VID]),
    st.binary(min_size=8, max_size=8),
    st.integers(0, 255),
    st.integers(0, 15),
)

requests = st.builds(
    WriteRequest,
    tag_id=st.integers(0, 255),
    configuration=st.builds(
        InterfaceConfiguration,
        addressee=addressees,
        dormant_timeout=st.integers(0, 255),
        response_mode=st.integers(0, 7),
        retry_mode=st.integers(0, 7),
        stop_on_error=st.booleans(),
        record=st.booleans(),
    ),
    file_id=st.integers(0, 255),
    data=st.binary(max_size=300),
    offset=st.integers(0, (1 << 30) - 1),
    respond_when_completed=st.booleans(),
)


@given(requests)
def test_request_round_trip(request: WriteRequest) -> None:
    assert WriteRequest.parse(request.encode()) == request


@given(requests, st.data())
def test_every_prefix_and_extension_of_a_request_is_refused(request: WriteRequest, data) -> None:
    raw = request.encode()
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(AlpError):
        WriteRequest.parse(raw[:cut])
    with pytest.raises(AlpError):
        WriteRequest.parse(raw + data.draw(st.binary(min_size=1, max_size=3)))


@given(st.binary(max_size=60))
def test_arbitrary_bytes_are_a_request_or_alp_error(raw: bytes) -> None:
    try:
        request = WriteRequest.parse(raw)
    except AlpError:
        return
    assert request.encode() == raw


@pytest.mark.parametrize(
    ("field", "value"),
    [("tag_id", 256), ("file_id", -1)],
)
def test_request_fields_out_of_range(field: str, value: int) -> None:
    with pytest.raises(ValueError, match="not a byte"):
        example_request()._replace(**{field: value}).encode()


def test_addressee_checks() -> None:
    with pytest.raises(ValueError, match="UID address has 8 bytes"):
        Addressee(b"\x01").encode()
    with pytest.raises(ValueError, match="4 bits"):
        Addressee(UID, nls_method=16).encode()
    with pytest.raises(ValueError, match="access class"):
        Addressee(UID, access_class=256).encode()
    config = example_request().configuration
    with pytest.raises(ValueError, match="3 bits"):
        config._replace(response_mode=8).encode()
    with pytest.raises(ValueError, match="not a byte"):
        config._replace(dormant_timeout=256).encode()


# ------------------------------------------------------------------ the answers

STATUS = D7Status(address=UID, link_budget=80, rx_level=66)
CONFIG = FileData(ENERGY_CONFIG_FILE_ID, 0, EnergyConfigFile(300, enabled=False).encode())


def test_completion_examples() -> None:
    assert parse_answer(bytes.fromhex("A32A")) == ModemAnswer(
        0x2A, end_of_procedure=True, error=False, status=None
    )
    assert parse_answer(bytes.fromhex("E32A")) == ModemAnswer(
        0x2A, end_of_procedure=True, error=True, status=None
    )
    # the status of LEN 0 that ends a host-initiated session, before or after the tag response
    assert parse_answer(bytes.fromhex("62D700A32A")) == ModemAnswer(
        0x2A, end_of_procedure=True, error=False, status=None
    )
    assert parse_answer(bytes.fromhex("E32A62D700")) == ModemAnswer(
        0x2A, end_of_procedure=True, error=True, status=None
    )


def test_a_response_with_its_payload_in_either_order() -> None:
    answer = ModemAnswer(0x2A, end_of_procedure=False, error=False, status=STATUS, file=CONFIG)
    first = answer.encode()
    assert first[:3] == bytes.fromhex("62D714")
    assert first[23:25] == bytes.fromhex("232A")
    second = answer.encode(status_first=False)
    assert second[:2] == bytes.fromhex("232A")
    assert parse_answer(first) == parse_answer(second) == answer
    # the payload first is an order too
    payload_first = first[25:] + first[:25]
    assert parse_answer(payload_first) == answer


answers = st.builds(
    ModemAnswer,
    tag_id=st.integers(0, 255),
    end_of_procedure=st.booleans(),
    error=st.booleans(),
    status=st.none()
    | st.builds(
        lambda address, rx_level, link_budget, access_class, nls: D7Status(
            address=address,
            rx_level=rx_level,
            link_budget=link_budget,
            access_class=access_class,
            nls_method=nls,
        ),
        st.binary(min_size=8, max_size=8),
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(0, 15),
    ),
    file=st.none()
    | st.builds(
        FileData,
        st.integers(0, 255),
        st.integers(0, 1000),
        st.binary(max_size=70),
    ),
)


@given(answers, st.booleans())
def test_answer_round_trip(answer: ModemAnswer, status_first: bool) -> None:
    raw = answer.encode(status_first=status_first)
    assert parse_answer(raw) == answer
    assert parse_received(raw) == answer


@pytest.mark.parametrize(
    ("raw_hex", "reason"),
    [
        ("", "not one tag response"),
        ("62D700", "not one tag response"),
        ("A32AA32A", "not one tag response"),
        ("62D70062D700A32A", "unsupported answer shape"),
        ("A3", "truncated tag response"),
        ("A32A04", "unsupported ALP action opcode 4"),
        ("A32A22", "unsupported status operand extension 0"),
        ("A32A62D7", "truncated interface status"),
        ("A32A62D705", "truncated interface status"),
        ("A32A62D701FF", "interface status too short"),
        ("A32A62AA00", "unsupported interface 0xAA"),
        ("A32A203E0005580200", "truncated file data"),
        ("A32A20", "truncated file id"),
    ],
)
def test_malformed_answers(raw_hex: str, reason: str) -> None:
    with pytest.raises(AlpError) as caught:
        parse_answer(bytes.fromhex(raw_hex))
    assert caught.value.reason == reason


@given(st.binary(max_size=50))
def test_arbitrary_bytes_raise_only_alp_error(raw: bytes) -> None:
    for parse in (parse_answer, parse_received):
        with contextlib.suppress(AlpError):
            parse(raw)


def test_received_frames_are_told_apart(vectors) -> None:
    for case in vectors:
        if not case.get("alp_hex"):
            continue
        raw = bytes.fromhex(case["alp_hex"])
        try:
            received = parse_received(raw)
        except AlpError:
            continue
        assert isinstance(received, UnsolicitedMessage), case["name"]
    sensor = encode_unsolicited(CONFIG.file_id, CONFIG.data, STATUS)
    assert isinstance(parse_received(sensor), UnsolicitedMessage)
    answer = ModemAnswer(7, end_of_procedure=True, error=False, status=STATUS)
    assert parse_received(answer.encode()) == answer


def test_a_malformed_answer_reports_the_answers_error() -> None:
    with pytest.raises(AlpError, match="not one tag response"):
        parse_received(bytes.fromhex("A32AE32A"))
    with pytest.raises(AlpError, match="unsupported ALP action opcode 4"):
        parse_received(bytes.fromhex("A32A04"))
