"""plugins/module_utils/sandbox/stream.py: Docker's exec stream read as hostile input."""

from __future__ import annotations

import struct

import pytest
from ansible_collections.fortress.agents.plugins.module_utils.sandbox import (
    Capped,
    Demuxer,
    StreamError,
)
from hypothesis import given
from hypothesis import strategies as st


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(data)) + data


def test_frames_split_anywhere_come_out_whole() -> None:
    data = frame(1, b"out") + frame(2, b"err") + frame(1, b"more")
    for cut in range(len(data) + 1):
        d = Demuxer()
        pieces = list(d.feed(data[:cut])) + list(d.feed(data[cut:]))
        joined: dict[int, bytes] = {}
        for stream, piece in pieces:
            joined[stream] = joined.get(stream, b"") + piece
        assert joined == {1: b"outmore", 2: b"err"} and d.idle


def test_a_header_announcing_more_than_the_cap_is_a_protocol_error() -> None:
    with pytest.raises(StreamError, match="announced a stream frame of 2147483648 bytes"):
        list(Demuxer().feed(struct.pack(">BxxxI", 1, 2**31)))


@pytest.mark.parametrize("header", [b"\x07\0\0\0\0\0\0\1", b"\x01\xff\0\0\0\0\0\1"])
def test_a_malformed_header_is_a_protocol_error(header: bytes) -> None:
    with pytest.raises(StreamError, match="malformed stream frame"):
        list(Demuxer().feed(header + b"x"))


@given(st.binary(max_size=4096))
def test_any_bytes_either_parse_or_raise_stream_error_and_never_exceed_the_input(
    raw: bytes,
) -> None:
    d = Demuxer(max_frame=1024)
    try:
        out = sum(len(p) for _, p in d.feed(raw))
    except StreamError:
        return
    assert out <= len(raw)


def test_capped_keeps_at_most_its_cap_and_says_so() -> None:
    c = Capped(5)
    for piece in (b"abc", b"def", b"ghi"):
        c.add(piece)
    assert bytes(c.data) == b"abcde" and c.truncated
    exact = Capped(3)
    exact.add(b"abc")
    assert not exact.truncated
