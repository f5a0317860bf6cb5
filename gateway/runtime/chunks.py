"""Where a chunked request body's framing ends, and how many bytes of trailers it carries."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

# A chunk-size line longer than this is not framing the parser would accept (it refuses
# lines over its own max_line_size, 8,190 bytes by default): the scan stops trusting the
# stream and counts everything from there on as trailers.
MAX_SIZE_LINE = 16 * 1024

_Phase = Literal["size", "data", "trailers", "lost"]


@dataclass(frozen=True, kw_only=True)
class ChunkScan:
    """How far a chunked body has been read: a chunk-size line (``size``), chunk data with
    its CRLF (``data``), the trailer section after the last chunk (``trailers``), or framing
    the scan cannot follow (``lost``, where every byte counts as trailers: it fails closed).

    The HTTP parser checks the framing; this only follows it, to count what the parser
    would collect into header lists after the body (trailers) and to find where it ends.
    """

    phase: _Phase = "size"
    # data: bytes of chunk data plus its CRLF still to come.
    remaining: int = 0
    # size: the part of a chunk-size line read so far.
    line: bytes = b""
    # trailers: bytes of the trailer line read so far.
    line_length: int = 0
    # Bytes of the trailer section (the last chunk's empty line included) read so far.
    trailer_bytes: int = 0


def scan(state: ChunkScan, data: bytes) -> tuple[ChunkScan, int | None]:
    """``state`` after ``data`` more bytes of the body, and the offset in ``data`` just past
    the body's end (the empty line ending the trailer section) when it ends in ``data``."""
    phase, remaining, line = state.phase, state.remaining, state.line
    line_length, trailer_bytes = state.line_length, state.trailer_bytes
    pos, end = 0, len(data)
    while pos < end:
        if phase == "data":
            take = min(remaining, end - pos)
            remaining -= take
            pos += take
            if remaining == 0:
                phase = "size"
        elif phase == "size":
            newline = data.find(b"\n", pos)
            if newline < 0:
                line += data[pos:]
                pos = end
                if len(line) > MAX_SIZE_LINE:
                    phase, line = "lost", b""
                continue
            text = line + data[pos:newline]
            line, pos = b"", newline + 1
            try:
                size = int(text.split(b";", 1)[0].strip(), 16)
            except ValueError:
                phase = "lost"
                continue
            if size < 0:
                phase = "lost"
            elif size == 0:
                phase, line_length = "trailers", 0
            else:
                phase, remaining = "data", size + 2
        elif phase == "trailers":
            newline = data.find(b"\n", pos)
            if newline < 0:
                line_length += end - pos
                trailer_bytes += end - pos
                pos = end
                continue
            taken = newline + 1 - pos
            line_length += taken
            trailer_bytes += taken
            pos = newline + 1
            if line_length <= 2:  # "\r\n": the empty line that ends the body
                return ChunkScan(phase="size", trailer_bytes=trailer_bytes), pos
            line_length = 0
        else:  # lost
            trailer_bytes += end - pos
            pos = end
    return replace(
        state,
        phase=phase,
        remaining=remaining,
        line=line,
        line_length=line_length,
        trailer_bytes=trailer_bytes,
    ), None
