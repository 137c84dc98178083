# Copyright: Fortress developers
# Apache-2.0
"""Docker's multiplexed exec stream, read as hostile input.

The daemon that answers may be an outer container's, where root can replace it: every byte
is untrusted. Frames are parsed as they arrive and never held whole: the demuxer keeps at
most a frame header between reads and the caller keeps at most max_output bytes per stream,
whatever a header announces. A header with an unknown stream or announcing more than
MAX_FRAME bytes is a protocol error (StreamError), which ends the exec.

Inside Docker's stdout are the sandbox init's own frames (InitFrames): the command's stdout,
its stderr, then one status. They are read the same way."""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

from .contract import INIT_FRAME_MAX, MAX_FRAME
from .errors import StreamError

_STREAMS = (0, 1, 2)  # stdin (echoed by a TTY-less exec never, but legal), stdout, stderr
# The sandbox init's frames (roles/gvisor/files/sandbox-init.c): a type byte, a 4-byte length.
INIT_STDOUT, INIT_STDERR, INIT_STATUS = 1, 2, 3
_INIT_STATUS = re.compile(
    rb"(?:exit (25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|signal ([1-9]|[1-5][0-9]|6[0-4])"
    rb"|(timeout))( escaped)?"
)


def shown(data: bytes, limit: int = 300) -> str:
    """A daemon's bytes as one bounded, printable line for a message or an audit event."""
    text = data[:limit].decode(errors="replace")
    return "".join(c if c.isprintable() else " " for c in text).strip()


class _Frames:
    """Frames read as they arrive, never held whole: a header of HEADER bytes (read by
    _parse into (kind, size), or a StreamError), then size bytes. At most a header is kept
    between reads."""

    HEADER = 8

    def __init__(self) -> None:
        self._header = b""
        self._kind = 0
        self._left = 0  # payload bytes of the current frame still to come

    def _parse(self, header: bytes) -> tuple[int, int]:
        raise NotImplementedError

    def _frames(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        view = memoryview(data)
        while view:
            if self._left:
                piece, view = bytes(view[: self._left]), view[self._left :]
                self._left -= len(piece)
                yield self._kind, piece
                continue
            need = self.HEADER - len(self._header)
            self._header += bytes(view[:need])
            view = view[need:]
            if len(self._header) < self.HEADER:
                return
            header, self._header = self._header, b""
            self._kind, self._left = self._parse(header)

    @property
    def idle(self) -> bool:
        """True between frames (a stream that ends here ended cleanly)."""
        return not self._header and not self._left


class Demuxer(_Frames):
    """Feed raw bytes; get (stream, payload piece) as they arrive."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        super().__init__()
        self.max_frame = max_frame

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        return self._frames(data)

    def _parse(self, header: bytes) -> tuple[int, int]:
        stream, zero = header[0], header[1:4]
        size = struct.unpack(">I", header[4:8])[0]
        if stream not in _STREAMS or zero != b"\0\0\0":
            raise StreamError(
                f"the daemon sent a malformed stream frame (stream byte {stream}): it is not "
                "speaking Docker's exec protocol; the exec was ended."
            )
        if size > self.max_frame:
            raise StreamError(
                f"the daemon announced a stream frame of {size} bytes (more than "
                f"{self.max_frame}): a hostile or broken daemon; the exec was ended."
            )
        return stream, size


class Capped:
    """Bytes of one stream kept up to a cap; the rest counted as truncated."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False

    def add(self, piece: bytes) -> None:
        room = self.cap - len(self.data)
        if len(piece) > room:
            self.truncated = True
        if room > 0:
            self.data += piece[:room]


class InitFrames(_Frames):
    """Feed the exec's stdout; get (INIT_STDOUT or INIT_STDERR, piece) as they arrive. The
    status frame is kept (status) and must be the last: anything after it, an unknown type,
    or a frame over INIT_FRAME_MAX is a protocol error."""

    HEADER = 5

    def __init__(self) -> None:
        super().__init__()
        self._status = b""
        self.status: bytes | None = None

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        for kind, piece in self._frames(data):  # _parse refuses any frame after the status
            if kind != INIT_STATUS:
                yield kind, piece
                continue
            self._status += piece
            if not self._left:
                self.status = self._status

    def _parse(self, header: bytes) -> tuple[int, int]:
        if self.status is not None:
            raise StreamError(
                "the sandbox's init sent bytes after its status: a hostile or broken "
                "daemon; the exec was ended."
            )
        kind, size = header[0], struct.unpack(">I", header[1:5])[0]
        if (
            kind not in (INIT_STDOUT, INIT_STDERR, INIT_STATUS)
            or size > INIT_FRAME_MAX
            or (kind == INIT_STATUS and not 0 < size <= 32)
        ):
            raise StreamError(
                f"the exec's output is not the sandbox init's frames (type {kind}, {size} "
                "bytes): a hostile or broken daemon, or an init that is not Fortress's; "
                "the exec was ended."
            )
        return kind, size


def init_status(status: bytes) -> tuple[int | None, bool, bool]:
    """(rc, timed out, escaped) from the init's status frame; a malformed one is a protocol
    error. A command killed by signal N has rc 128 + N, as a shell reports it."""
    match = _INIT_STATUS.fullmatch(status)
    if match is None:
        raise StreamError(
            f"the sandbox's init sent a malformed status ({status[:32]!r}): a hostile or "
            "broken daemon; the exec was ended."
        )
    code, signal, timeout, escaped = match.groups()
    rc = None if timeout else int(code) if code is not None else 128 + int(signal)
    return rc, timeout is not None, escaped is not None


class ExecOutput:
    """One exec's answer as it arrives: Docker's frames, the init's frames inside its
    stdout, each of the command's streams kept up to max_output, and the daemon's first
    bytes as sent (its reason when the runtime could not start the init)."""

    def __init__(self, max_output: int) -> None:
        self.out, self.err = Capped(max_output), Capped(max_output)
        self.raw = Capped(300)
        self.exec_id = ""
        self._docker, self._init = Demuxer(), InitFrames()

    def take(self, chunk: bytes) -> None:
        for stream, piece in self._docker.feed(chunk):
            self.raw.add(piece)
            if stream != 1:
                if self.status is not None:
                    raise StreamError(
                        "the daemon sent output after the sandbox init's status: a hostile or "
                        "broken daemon; the exec was ended."
                    )
                self.err.add(piece)  # the init's own complaints
                continue
            for kind, data in self._init.feed(piece):
                (self.out if kind == INIT_STDOUT else self.err).add(data)

    @property
    def idle(self) -> bool:
        """True when both streams ended between frames."""
        return self._docker.idle and self._init.idle

    @property
    def status(self) -> bytes | None:
        return self._init.status

    @property
    def truncated(self) -> bool:
        return self.out.truncated or self.err.truncated
