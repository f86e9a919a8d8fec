"""Record framing for spool files: each record carries its length and CRC32.

A framed record is one line::

    OLE1 <length> <crc32, 8 hex digits> <payload>\\n

The length lets a payload hold any bytes; the checksum tells an intact record from a
damaged one, so a torn or corrupted file costs only its damaged bytes: parsing skips to
the next frame whose checksum holds. Files written before framing (plain JSON Lines) are
still read: a file with no frame in it is split into lines.

Pure functions on bytes: how the bytes are read (and trusted) is the caller's business.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import attrs

MAGIC = b"OLE1 "
_HEADER = re.compile(rb"OLE1 (\d{1,10}) ([0-9a-f]{8}) ")


def frame(payload: bytes) -> bytes:
    """One record as it is written to disk."""
    return b"%s%d %08x %s\n" % (MAGIC, len(payload), zlib.crc32(payload), payload)


def frame_all(payloads: Sequence[bytes]) -> bytes:
    return b"".join(frame(p) for p in payloads)


@attrs.frozen
class Parsed:
    """What a file holds: its intact records (and where each ends), and the damaged spans."""

    records: list[bytes]
    ends: list[int]
    damaged: list[tuple[int, int]]
    framed: bool

    def damaged_bytes(self, data: bytes) -> bytes:
        return b"".join(data[start:end] for start, end in self.damaged)


def _frame_at(data: bytes, pos: int) -> tuple[bytes, int] | None:
    """(payload, end of the frame) if an intact frame starts at ``pos``."""
    header = _HEADER.match(data, pos)
    if header is None:
        return None
    start = header.end()
    end = start + int(header.group(1))
    if end > len(data):
        return None  # torn: the payload was cut short
    payload = data[start:end]
    if zlib.crc32(payload) != int(header.group(2), 16):
        return None
    # The newline is a convenience for humans and grep; a damaged one costs nothing.
    if data[end : end + 1] == b"\n":
        end += 1
    return payload, end


def _next_frame(data: bytes, pos: int) -> int:
    """Where the next intact frame after ``pos`` starts; len(data) if none does."""
    candidate = data.find(MAGIC, pos + 1)
    while candidate >= 0:
        if _frame_at(data, candidate) is not None:
            return candidate
        candidate = data.find(MAGIC, candidate + 1)
    return len(data)


def is_framed(data: bytes) -> bool:
    # JSON Lines start every line with "{": a frame is never mistaken for the old format.
    return data.startswith(MAGIC) or b"\n" + MAGIC in data


def parse_records(data: bytes) -> Parsed:
    """Every intact record of a spool file, and the damaged spans between them."""
    records: list[bytes] = []
    ends: list[int] = []
    if not is_framed(data):
        pos = 0
        for line in data.split(b"\n"):
            pos += len(line) + 1
            if line.strip():
                records.append(line)
                ends.append(min(pos, len(data)))
        return Parsed(records, ends, [], framed=False)
    damaged: list[tuple[int, int]] = []
    pos = 0
    while pos < len(data):
        found = _frame_at(data, pos)
        if found is not None:
            payload, pos = found
            records.append(payload)
            ends.append(pos)
            continue
        resync = _next_frame(data, pos)
        damaged.append((pos, resync))
        pos = resync
    return Parsed(records, ends, damaged, framed=True)
