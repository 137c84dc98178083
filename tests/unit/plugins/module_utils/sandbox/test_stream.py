"""plugins/module_utils/sandbox/stream.py: Docker's exec stream read as hostile input."""

from __future__ import annotations

import struct

import pytest
from ansible_collections.fortress.agents.plugins.module_utils.sandbox import (
    Capped,
    Demuxer,
    StreamError,
)
from ansible_collections.fortress.agents.plugins.module_utils.sandbox.stream import (
    InitFrames,
    init_status,
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


# --- the sandbox init's frames inside Docker's stdout ----------------------------------------


def init(kind: int, data: bytes) -> bytes:
    return struct.pack(">BI", kind, len(data)) + data


def test_the_inits_frames_split_anywhere_come_out_whole_with_one_status() -> None:
    data = init(1, b"out") + init(2, b"err") + init(1, b"more") + init(3, b"exit 3 escaped")
    for cut in range(len(data) + 1):
        frames = InitFrames()
        joined: dict[int, bytes] = {}
        for kind, piece in [*frames.feed(data[:cut]), *frames.feed(data[cut:])]:
            joined[kind] = joined.get(kind, b"") + piece
        assert joined == {1: b"outmore", 2: b"err"} and frames.status == b"exit 3 escaped"
        assert init_status(frames.status) == (3, False, True)


@pytest.mark.parametrize(
    ("status", "parsed"),
    [(b"exit 0", (0, False, False)), (b"signal 9", (137, False, False)),
     (b"timeout", (None, True, False)), (b"timeout escaped", (None, True, True))],
)  # fmt: skip
def test_a_status_says_rc_timeout_and_escape(status: bytes, parsed: tuple) -> None:
    assert init_status(status) == parsed


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (init(3, b"exit 0") + init(1, b"forged"), "after its status"),
        (init(9, b"x"), "not the sandbox init's frames"),
        (struct.pack(">BI", 1, 2**31), "not the sandbox init's frames"),
        (struct.pack(">BI", 3, 4096), "not the sandbox init's frames"),
    ],
    ids=["after the status", "unknown type", "huge frame", "huge status"],
)
def test_hostile_init_frames_are_a_protocol_error(data: bytes, match: str) -> None:
    with pytest.raises(StreamError, match=match):
        list(InitFrames().feed(data))


@pytest.mark.parametrize(
    "status",
    [b"exit", b"exit 1234", b"exit 256", b"exit 007", b"signal 0", b"signal 65",
     b"exit \xd9\xa1", b"ok", b"exit 0 "],
)  # fmt: skip
def test_a_malformed_status_is_a_protocol_error(status: bytes) -> None:
    with pytest.raises(StreamError, match="malformed status"):
        init_status(status)


@given(st.binary(max_size=300))
def test_any_bytes_are_frames_or_one_protocol_error(data: bytes) -> None:
    frames = InitFrames()
    try:
        kept = sum(len(piece) for _, piece in frames.feed(data))
    except StreamError:
        return
    assert kept <= len(data)
