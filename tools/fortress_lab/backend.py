"""What every kind of lab host shares: host specs, lab hosts and the LabBackend interface.

fleet.py maps each kind to its backend (BACKENDS) and does the kind-independent work;
the backends live in fleet.py (container) and vm.py (vm).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class HostSpec:
    """A lab host to have: its name (also its hostname), image key, extra hostvars and the
    options its backend understands (for example {"restrict": true} for a VM)."""

    name: str
    image: str
    hostvars: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LabHost:
    """A lab host that exists, as its backend reports it."""

    name: str
    lab: str
    kind: str
    image: str
    state: str
    hostvars: Mapping[str, Any] = field(default_factory=dict)


class LabBackend(ABC):
    """One kind of lab host (container, vm, ...)."""

    kind: ClassVar[str]
    # Image keys that `fortress_lab up --count N` takes in turn for this kind.
    default_images: ClassVar[tuple[str, ...]]

    @abstractmethod
    def validate_spec(self, spec: HostSpec) -> None:
        """LabError unless this kind knows the spec's image key and options."""

    @abstractmethod
    def ensure_images(self, keys: Sequence[str] | None = None) -> list[str]:
        """Build the missing images among `keys` (default: all); one line per image."""

    @abstractmethod
    def up(self, lab: str, hosts: Sequence[HostSpec]) -> list[LabHost]:
        """Make the lab consist of exactly `hosts`: keep good ones, create missing, drop surplus.

        All or nothing: when a host cannot be created, whatever this call created is removed
        before the error propagates.
        """

    @abstractmethod
    def down(self, lab: str) -> None:
        """Remove every host of the lab and everything created for it; idempotent."""

    @abstractmethod
    def hosts(self, lab: str) -> list[LabHost]:
        """The lab's hosts of this kind, in natural name order."""

    @abstractmethod
    def inventory_vars(self, host: LabHost) -> dict[str, Any]:
        """Inventory hostvars that let Ansible reach and describe `host`."""


def natural_key(name: str) -> list[Any]:
    """Sort key that puts fortress-lab-2 before fortress-lab-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
