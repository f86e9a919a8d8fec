"""Record framing: every intact record is found, damage costs only the damaged bytes."""

from __future__ import annotations

import zlib

from openlineage_emitter._records import MAGIC, frame, frame_all, parse_records

RECORDS = [b'{"i": %d, "pad": "%s"}' % (i, b"x" * (i * 7)) for i in range(10)]


def spans(payloads: list[bytes]) -> list[tuple[int, int]]:
    """(start, end) of each framed record in frame_all(payloads)."""
    out, pos = [], 0
    for payload in payloads:
        out.append((pos, pos + len(frame(payload))))
        pos += len(frame(payload))
    return out


def test_a_frame_carries_length_and_crc32_before_the_payload() -> None:
    payload = b'{"a": 1}'
    assert frame(payload) == b"OLE1 8 %08x %s\n" % (zlib.crc32(payload), payload)


def test_records_round_trip() -> None:
    parsed = parse_records(frame_all(RECORDS))
    assert (parsed.records, parsed.damaged, parsed.framed) == (RECORDS, [], True)


def test_a_payload_may_hold_newlines_and_the_frame_marker() -> None:
    tricky = [b"line one\nline two", MAGIC + b"5 00000000 fake!", b""]
    assert parse_records(frame_all(tricky)).records == tricky


def test_bytes_corrupted_in_the_middle_cost_only_the_records_they_touch() -> None:
    data = bytearray(frame_all(RECORDS))
    where = spans(RECORDS)
    start, end = where[4][0] + 10, where[5][0] + 3  # the body of record 4, the head of record 5
    data[start:end] = b"\x00" * (end - start)
    parsed = parse_records(bytes(data))
    assert parsed.records == RECORDS[:4] + RECORDS[6:]
    assert parsed.damaged == [(where[4][0], where[6][0])]


def test_a_lost_newline_between_records_costs_nothing() -> None:
    data = bytearray(frame_all(RECORDS))
    data[spans(RECORDS)[2][1] - 1] = ord("X")
    parsed = parse_records(bytes(data))
    assert parsed.records == RECORDS
    assert parsed.damaged_bytes(bytes(data)) == b"X"


def test_a_torn_tail_costs_only_the_last_record() -> None:
    data = frame_all(RECORDS)
    torn = data[: spans(RECORDS)[-1][0] + 12]
    parsed = parse_records(torn)
    assert parsed.records == RECORDS[:-1]
    assert parsed.damaged_bytes(torn) == data[spans(RECORDS)[-1][0] : len(torn)]


def test_a_bit_flip_in_a_length_field_costs_one_record() -> None:
    data = bytearray(frame_all(RECORDS))
    data[spans(RECORDS)[3][0] + len(MAGIC)] ^= 0x01  # the first digit of record 3's length
    assert parse_records(bytes(data)).records == RECORDS[:3] + RECORDS[4:]


def test_each_record_ends_where_its_frame_ends() -> None:
    assert parse_records(frame_all(RECORDS)).ends == [end for _, end in spans(RECORDS)]


def test_old_json_lines_files_are_read_line_by_line() -> None:
    parsed = parse_records(b'{"a": 1}\n\n{"a": 2}\n')
    assert (parsed.records, parsed.damaged, parsed.framed) == ([b'{"a": 1}', b'{"a": 2}'], [], False)
    assert parsed.ends == [9, 19]


def test_a_framed_file_whose_first_bytes_are_damaged_is_still_read_as_framed() -> None:
    data = b"garbage" + frame_all(RECORDS[:3])[7:]
    parsed = parse_records(data)
    assert parsed.framed
    assert parsed.records == RECORDS[1:3]
