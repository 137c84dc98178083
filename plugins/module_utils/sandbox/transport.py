# Copyright: Fortress developers
# Apache-2.0
"""The Docker client, with every reply read as hostile.

docker-py reads each HTTP reply whole, with a timeout per socket read: a daemon that root
in an outer controls could answer with gigabytes, or a byte every few seconds for ever.
Here every reply that is not a hijacked stream is read in pieces, at most MAX_REPLY bytes
and within a deadline (REPLY_TIMEOUT, or less where a caller's own timeout is shorter);
past either bound the call fails with one sentence and the connection is dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .contract import MAX_REPLY, REPLY_TIMEOUT
from .errors import SandboxError

try:  # the Docker SDK for Python; the modules report its absence cleanly
    import docker
    import docker.errors

    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR: Exception | None = None
    _API: Any = docker.APIClient
except ImportError as exc:  # pragma: no cover - depends on the host
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = exc
    docker = None  # type: ignore[assignment]
    _API = object


class BoundedAPIClient(_API):  # type: ignore[misc,valid-type]
    """docker.APIClient whose replies are read bounded in bytes and time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._local = threading.local()  # first: the constructor already asks the version
        self.shown = kwargs.pop("shown", None) or kwargs.get("base_url")  # for messages
        super().__init__(*args, **kwargs)

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Replies read in this block (this thread) must end within seconds."""
        before = getattr(self._local, "seconds", None)
        self._local.seconds = max(0.5, min(seconds, before or REPLY_TIMEOUT))
        try:
            yield
        finally:
            self._local.seconds = before

    def _set_request_timeout(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs = super()._set_request_timeout(kwargs)
        kwargs.setdefault("stream", True)  # read below, bounded, instead of whole by requests
        kwargs["allow_redirects"] = False  # a daemon does not redirect; never followed,
        # and refused before requests reads a redirect's body whole (it does, to release it)
        kwargs["hooks"] = {"response": [self._refuse_redirect]}
        return kwargs

    def _refuse_redirect(self, response: Any, **_kwargs: Any) -> Any:
        if 300 <= response.status_code < 400:
            response.close()
            raise SandboxError(
                f"the Docker daemon at {self.shown} answered {response.request.method} "
                f"{response.request.path_url.split('?')[0]} with a redirect "
                f"({response.status_code}): a hostile or broken daemon."
            )
        return response

    def _get_raw_response_socket(self, response: Any) -> Any:
        """The calls that really hand the socket over (exec, attach): their stream is read
        by the caller, bounded there. Only these skip the bound, whatever a reply claims.

        The socket comes back non-blocking, with `early`: the stream's bytes that the HTTP
        reader took from the socket with the reply's head (a quick command's whole output,
        on a busy host). The stream starts with them; reading the socket alone loses them."""
        self._local.hijack = True
        try:
            sock = super()._get_raw_response_socket(response)
        finally:
            self._local.hijack = False
        getattr(sock, "_sock", sock).setblocking(False)
        try:  # the reader's buffer (at most its size), or one read that finds nothing yet
            sock.early = response.raw._fp.fp.read1(65536) or b""
        except BlockingIOError:
            sock.early = b""
        return sock

    def _raise_for_status(self, response: Any) -> None:
        where = f"{response.request.method} {response.request.path_url.split('?')[0]}"
        if not getattr(self._local, "hijack", False) and not response._content_consumed:
            response._content = self._bounded(response)
            response._content_consumed = True
        try:
            super()._raise_for_status(response)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            raise SandboxError(
                f"the Docker daemon at {self.shown} answered {where} with an error the "
                f"library cannot read ({type(exc).__name__}): a hostile or broken daemon."
            ) from exc

    def _result(self, response: Any, json: bool = False, binary: bool = False) -> Any:
        try:
            return super()._result(response, json=json, binary=binary)
        except (ValueError, RecursionError) as exc:  # JSON that is not JSON, or too deep
            raise SandboxError(
                f"the Docker daemon at {self.shown} sent a reply that is not JSON to "
                f"{response.request.method} {response.request.path_url.split('?')[0]}: a "
                "hostile or broken daemon."
            ) from exc

    def _bounded(self, response: Any) -> bytes:
        seconds = getattr(self._local, "seconds", None) or REPLY_TIMEOUT
        ends = time.monotonic() + seconds
        raw = response.raw
        # One socket read at a time (urllib3 2 has read1; 1.26, Debian 12's, has the
        # http.client response under it), so the deadline is checked between pieces.
        read1 = getattr(raw, "read1", None) or raw._fp.read1
        data = bytearray()
        try:
            while piece := read1(65536):
                data += piece
                if len(data) > MAX_REPLY:
                    raise SandboxError(
                        f"the Docker daemon at {self.shown} sent a reply larger than "
                        f"{MAX_REPLY} bytes to {response.request.method} "
                        f"{response.request.path_url.split('?')[0]}: a hostile or broken daemon."
                    )
                if time.monotonic() > ends:
                    raise SandboxError(
                        f"the Docker daemon at {self.shown} took more than {seconds:.0f} s "
                        f"to send its reply to {response.request.method} "
                        f"{response.request.path_url.split('?')[0]}: a hostile or hung daemon."
                    )
        finally:
            response.close()
        return bytes(data)


def connect(socket_path: str, timeout: float, shown: str | None = None, keep: Any = None) -> Any:
    """A docker.DockerClient on socket_path whose API client is BoundedAPIClient; messages
    name the socket `shown` (the path a caller gave, when socket_path is a descriptor's), and
    the API client keeps `keep` (that descriptor) alive as long as it lives."""
    client = docker.DockerClient.__new__(docker.DockerClient)
    client.api = BoundedAPIClient(
        base_url=f"unix://{socket_path}", timeout=timeout, shown=f"unix://{shown or socket_path}"
    )
    client.api.verified_socket = keep
    return client
