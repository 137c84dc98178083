# Copyright: Fortress developers
# Apache-2.0
"""The library's one exception, and the daemon a call lost turned into it."""

from __future__ import annotations

import functools
from typing import Any

try:  # requests comes with the Docker SDK for Python (client.py reports its absence)
    import requests.exceptions

    # What a daemon that died, restarted or hangs looks like from here.
    # (Not HTTPError: the daemon's own refusals, docker.errors.APIError, are handled apart.)
    LOST: tuple[type[BaseException], ...] = (
        requests.exceptions.ConnectionError, requests.exceptions.Timeout,
        requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError,
        requests.exceptions.TooManyRedirects, OSError,
    )  # fmt: skip
    # The daemon's own refusals (docker.errors.APIError is one): a RequestException, hence an
    # OSError, but an answer, passed on to the caller's handling.
    ANSWERS: tuple[type[BaseException], ...] = (requests.exceptions.HTTPError,)
except ImportError:  # pragma: no cover - depends on the host
    LOST = (OSError,)
    ANSWERS = ()
# What a reply of the wrong shape raises in the Docker SDK or here (a list where a mapping
# should be, a key missing, JSON nested too deep): a hostile or broken daemon.
MALFORMED = (KeyError, IndexError, TypeError, AttributeError, ValueError, RecursionError)


class SandboxError(Exception):
    """One sentence that names the problem and the fix."""


class StreamError(SandboxError):
    """A daemon sent bytes that are not Docker's stream protocol (hostile or broken)."""


def daemon_call(what: str) -> Any:
    """Turn a daemon lost mid-call into one SandboxError sentence (not a traceback)."""

    def wrap(method: Any) -> Any:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except (SandboxError, *ANSWERS):
                raise
            except LOST as exc:
                raise SandboxError(
                    f"the Docker daemon at {self.socket_path} stopped answering during {what} "
                    f"({type(exc).__name__}): check that it runs (the host's docker service, or "
                    "the outer container), then retry."
                ) from exc
            except MALFORMED as exc:
                raise SandboxError(
                    f"the Docker daemon at {self.socket_path} sent a reply the library cannot "
                    f"read during {what} ({type(exc).__name__}: {str(exc)[:200]}): a hostile or "
                    "broken daemon."
                ) from exc

        return call

    return wrap
