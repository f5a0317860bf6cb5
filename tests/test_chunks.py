"""Following a chunked body's framing: where it ends and how many trailer bytes it carries,
however the bytes are split into reads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.runtime.chunks import MAX_SIZE_LINE, ChunkScan, scan


def scan_in_reads(data: bytes, cuts: list[int]) -> tuple[ChunkScan, int | None]:
    """Scan ``data`` split at ``cuts``; the state and the end's offset in ``data``."""
    state, start = ChunkScan(), 0
    for cut in [*sorted(set(cuts)), len(data)]:
        state, end = scan(state, data[start:cut])
        if end is not None:
            return state, start + end
        start = max(start, cut)
    return state, None


BODY = b"5\r\nhello\r\n10;ext=1\r\n" + b"x" * 16 + b"\r\n0\r\n"
TRAILERS = b"X-Checksum: abc\r\nX-More: 1\r\n\r\n"
NEXT = b"GET / HTTP/1.1\r\n\r\n"


@given(st.lists(st.integers(0, len(BODY + TRAILERS + NEXT)), max_size=8))
def test_the_end_and_the_trailers_are_found_however_the_reads_fall(cuts: list[int]) -> None:
    state, end = scan_in_reads(BODY + TRAILERS + NEXT, cuts)
    assert end == len(BODY + TRAILERS)
    assert state.trailer_bytes == len(TRAILERS)


def test_a_body_without_trailers_counts_only_its_empty_line() -> None:
    state, end = scan(ChunkScan(), BODY + b"\r\n" + NEXT)
    assert (end, state.trailer_bytes) == (len(BODY) + 2, 2)


def test_chunk_data_that_looks_like_framing_is_data() -> None:
    body = b"8\r\n" + b"0\r\n\r\n0\r\n" + b"\r\n0\r\n\r\n"
    assert scan(ChunkScan(), body)[1] == len(body)


def test_an_unfinished_trailer_section_is_counted_as_it_comes() -> None:
    state, end = scan(ChunkScan(), b"0\r\n" + b"X-Fill: " + b"a" * 5000)
    assert end is None
    assert state.trailer_bytes == 5008


def test_framing_it_cannot_follow_counts_everything_after_as_trailers() -> None:
    state, end = scan(ChunkScan(), b"zz\r\n" + b"a" * 100)
    assert (state.phase, end, state.trailer_bytes) == ("lost", None, 100)
    state, end = scan(ChunkScan(), b"1" * (MAX_SIZE_LINE + 1))
    assert state.phase == "lost"
    assert scan(state, b"a" * 10)[0].trailer_bytes == 10
