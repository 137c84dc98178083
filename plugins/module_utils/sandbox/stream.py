# Copyright: Fortress developers
# Apache-2.0
"""Docker's multiplexed exec stream, read as hostile input.

The daemon that answers may be an outer container's, where root can replace it: every byte
is untrusted. Frames are parsed as they arrive and never held whole: the demuxer keeps at
most a frame header between reads and the caller keeps at most max_output bytes per stream,
whatever a header announces. A header with an unknown stream or announcing more than
MAX_FRAME bytes is a protocol error (StreamError), which ends the exec."""

from __future__ import annotations

import struct
from collections.abc import Iterator

from .contract import MAX_FRAME
from .errors import StreamError

_STREAMS = (0, 1, 2)  # stdin (echoed by a TTY-less exec never, but legal), stdout, stderr


class Demuxer:
    """Feed raw bytes; get (stream, payload piece) as they arrive."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._header = b""
        self._stream = 0
        self._left = 0  # payload bytes of the current frame still to come

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        view = memoryview(data)
        while view:
            if self._left:
                piece, view = view[: self._left], view[self._left :]
                self._left -= len(piece)
                yield self._stream, bytes(piece)
                continue
            need = 8 - len(self._header)
            self._header += bytes(view[:need])
            view = view[need:]
            if len(self._header) < 8:
                return
            stream, zero = self._header[0], self._header[1:4]
            size = struct.unpack(">I", self._header[4:8])[0]
            self._header = b""
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
            self._stream, self._left = stream, size

    @property
    def idle(self) -> bool:
        """True between frames (a stream that ends here ended cleanly)."""
        return not self._header and not self._left


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
