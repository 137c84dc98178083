# Copyright: Fortress developers
# Apache-2.0
"""A container's inspect data, read as hostile: what a listing or the reaper may rely on.

An outer's daemon can answer with any JSON; a malformed container becomes an entry with an
`error` (reported, skipped by the reaper), never an exception that stops a listing."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from .contract import LABEL, LABEL_EXPIRES, LABEL_IMAGE, LABEL_OWNER, MAX_LISTED
from .errors import SandboxError


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def labels_of(attrs: Any) -> dict[str, str] | None:
    """The container's labels if they are a mapping of strings; None otherwise."""
    labels = _dict(attrs).get("Config", {})
    labels = labels.get("Labels") if isinstance(labels, dict) else None
    if labels is None:
        return {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        return None
    return labels


def expiry(labels: dict[str, str]) -> float | None:
    """The expiry time the labels give: a finite number of epoch seconds, else None (a
    missing, broken or planted label)."""
    try:
        value = float(labels[LABEL_EXPIRES])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def created(attrs: dict[str, Any]) -> float | None:
    """When the daemon says the container was created (epoch seconds), or None."""
    value = attrs.get("Created")
    try:  # "2026-12-06T12:00:00.123456789Z": seconds are enough
        when = datetime.strptime(str(value)[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    return when.replace(tzinfo=UTC).timestamp()


def entry(attrs: Any, now: float, max_ttl: int | None = None) -> dict[str, Any]:
    """One listing entry (the keys sandbox_info documents), with `error` when malformed.
    With max_ttl, the expiry is at most the creation time plus max_ttl: a label beyond it
    (planted, or asked for under a higher limit) does not keep a sandbox past the host's
    maximum."""
    attrs = _dict(attrs)
    labels = labels_of(attrs)
    name = attrs.get("Name")
    found: dict[str, Any] = {
        "name": name.lstrip("/") if isinstance(name, str) else "?",
        "id": attrs.get("Id") if isinstance(attrs.get("Id"), str) else "?",
        "status": _dict(attrs.get("State")).get("Status", "?"),
        "image": (labels or {}).get(LABEL_IMAGE, ""), "owner": (labels or {}).get(LABEL_OWNER, ""),
        "expires": None, "expired": False, "labels": labels or {},
        "runtime": _dict(attrs.get("HostConfig")).get("Runtime", "?"),
    }  # fmt: skip
    if labels is None or "?" in (found["id"], found["status"], found["runtime"]):
        found["error"] = "its inspect data is malformed (a hostile or broken daemon)"
    elif labels.get(LABEL) != "1":
        found["error"] = "it is not labelled as a Fortress sandbox"
    elif (expires := expiry(labels)) is None:
        found["error"] = (
            f"label {LABEL_EXPIRES} is {labels.get(LABEL_EXPIRES)!r}, not a finite time"
        )
    elif max_ttl is not None and (born := created(attrs)) is None:
        found["error"] = f"its creation time {attrs.get('Created')!r} is not a time"
    else:
        if max_ttl is not None and born is not None:
            expires = min(expires, born + max_ttl)
        found["expires"], found["expired"] = expires, expires <= now
    if "error" in found:
        found["error"] += ": skipped by the reaper; inspect it and remove it by hand"
    return found


def ids_of(listing: Any, where: str) -> list[str]:
    """The container IDs of a daemon's listing (GET /containers/json): a list of objects
    with a string Id, at most MAX_LISTED of them; SandboxError otherwise."""
    if not isinstance(listing, list) or not all(
        isinstance(c, dict) and isinstance(c.get("Id"), str) for c in listing
    ):
        raise SandboxError(
            f"the Docker daemon at {where} sent a container listing that is not a list of "
            "containers with IDs: a hostile or broken daemon."
        )
    if len(listing) > MAX_LISTED:
        raise SandboxError(
            f"the Docker daemon at {where} lists {len(listing)} Fortress sandboxes, more than "
            f"{MAX_LISTED}: a hostile daemon, or remove sandboxes before listing again."
        )
    return [c["Id"] for c in listing]
