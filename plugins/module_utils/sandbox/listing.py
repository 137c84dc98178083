# Copyright: Fortress developers
# Apache-2.0
"""Listing and reaping, with a container's inspect data read as hostile.

An outer's daemon can answer with any JSON; a malformed container becomes an entry with an
`error` (reported, skipped by the reaper), never an exception that stops a listing."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

from . import mounts
from .contract import (
    LABEL,
    LABEL_EXPIRES,
    LABEL_IMAGE,
    LABEL_MOUNTS,
    LABEL_OWNER,
    LIST_TIMEOUT,
    MAX_LISTED,
)  # fmt: skip
from .errors import SandboxError, daemon_call
from .transport import docker


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


class ListingMixin:
    """Listing and reaping, for Sandboxes (client.py: self.client, self.audit, ...)."""

    @daemon_call("list")
    def list(self, owner: str | None = None, labels: dict[str, str] | None = None,
             now: float | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Fortress sandboxes on this daemon (listing.entry). One whose inspect data or
        expiry label is malformed is listed with expires None, expired False and the
        problem in `error`."""
        filters = [f"{LABEL}=1"]
        if owner:
            filters.append(f"{LABEL_OWNER}={owner}")
        filters += [f"{k}={v}" for k, v in (labels or {}).items()]
        now = time.time() if now is None else now
        api = self.client.api
        ends = time.monotonic() + LIST_TIMEOUT
        found = []
        # One container inspected at a time and kept only as its entry: what a daemon sends
        # is bounded per reply (transport), in count (ids_of) and in total time.
        for cid in ids_of(api.containers(all=True, filters={"label": filters}), self.socket_path):
            if time.monotonic() > ends:
                raise SandboxError(
                    f"listing the sandboxes of the Docker daemon at {self.socket_path} took "
                    f"more than {LIST_TIMEOUT:.0f} s: a hostile or overloaded daemon."
                )
            try:
                attrs = api.inspect_container(cid)
            except docker.errors.NotFound:
                continue  # removed since the listing
            found.append(entry(attrs, now, self.max_ttl))
        return found

    @daemon_call("reap")
    def reap(self, dry_run: bool = False, now: float | None = None) -> list[str]:
        """Destroy every Fortress sandbox whose TTL has passed; return their names. Each is
        read again by ID and removed by ID, so a sandbox recreated under the same name in
        between is not touched; one with a bad expiry label is reported and skipped."""
        now = time.time() if now is None else now
        reaped = []
        for found in self.list(now=now):
            if "error" in found:
                self.audit.event("reap-skipped", sandbox=found["name"], reason=found["error"])
                self.skipped.append(f"{found['name']}: {found['error']}")
                continue
            if not found["expired"]:
                continue
            if not dry_run:
                try:
                    container = self.client.containers.get(found["id"])
                except docker.errors.NotFound:
                    continue
                again = entry(container.attrs, now, self.max_ttl)
                if again["id"] != found["id"] or not again["expired"] or "error" in again:
                    continue
                container.remove(force=True)
                self.release_mounts(again["labels"])
                self.audit.event("reap", sandbox=found["name"], id=found["id"])
            reaped.append(found["name"])
        if not dry_run and self.host_daemon:  # sandboxes removed some other way
            listing = self.client.api.containers(all=True, filters={"label": [LABEL_MOUNTS]})
            labels = [c.get("Labels") for c in listing if isinstance(c, dict)]
            mounts.sweep({each.get(LABEL_MOUNTS) for each in labels if isinstance(each, dict)})
        return reaped
