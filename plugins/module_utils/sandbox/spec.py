# Copyright: Fortress developers
# Apache-2.0
"""What a sandbox is (its spec), what an exec returns, and the checks on caller input."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import asdict, dataclass, field

from .contract import DEFAULT_TTL, DEFAULT_USER, MAX_TTL, RESERVED_LABEL_PREFIX
from .errors import SandboxError

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
_SIZE = re.compile(r"(\d+)([bkmg]?)", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_MODE = re.compile(r"0?[0-7]{3,4}")


def parse_size(value: str | int | None, option: str) -> int | None:
    """'512m' -> bytes; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(str(value).strip())
    if not match or int(match.group(1)) == 0:
        raise SandboxError(f"{option} must be a size like 256m or 1g, not {value!r}.")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_mode(value: str) -> str:
    """A file mode as four octal digits: permission bits and the sticky bit, no setuid or
    setgid, given as an octal string ('0600', '644'). A number is refused: it is what YAML
    makes of an unquoted mode (0400 becomes 256, but 400 stays 400, octal 620), and the two
    cannot be told apart. Anything else (a chmod option, a symbolic mode, a second argument)
    is refused before it reaches a shell."""
    if isinstance(value, (int, float)):
        raise SandboxError(
            f"mode came as the number {value!r}, which is how YAML reads an unquoted mode "
            "(0400 becomes 256, 400 stays 400): quote it, for example mode: '0600'."
        )
    if not isinstance(value, str) or not _MODE.fullmatch(value) or int(value, 8) > 0o1777:
        raise SandboxError(
            f"mode must be an octal file mode like '0600' or '0644' (permission bits and the "
            f"sticky bit, no setuid or setgid), not {value!r}."
        )
    return f"{int(value, 8):04o}"


def check_ttl(ttl: int, max_ttl: int = MAX_TTL) -> int:
    if not isinstance(ttl, int) or ttl < 1:
        raise SandboxError(f"ttl must be 1 second or more, not {ttl}.")
    if ttl > max_ttl:
        raise SandboxError(
            f"ttl {ttl} is longer than this host allows ({max_ttl} s): ask for at most "
            f"{max_ttl} (the modules' max_ttl option sets the limit)."
        )
    return ttl


@dataclass
class Mount:
    source: str
    target: str
    read_only: bool = True


@dataclass
class SandboxSpec:
    """What a sandbox is. Defaults are the safe ones."""

    image: str
    name: str | None = None
    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    user: str = DEFAULT_USER
    cpus: float | None = 1.0
    memory: str | None = "512m"
    pids: int | None = 256
    tmpfs_size: str = "64m"
    read_only: bool = True
    network: str = "none"
    owner: str = "unknown"
    ttl: int = DEFAULT_TTL
    labels: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    runtime: str = "runsc"

    def fingerprint(self, key: bytes | None = None) -> str:
        """A keyed hash of everything that defines the sandbox (not its name): same spec and
        key, same hash, so `state: present` twice changes nothing and a changed spec
        recreates. The label is readable by anyone who can list containers, so env values
        (secrets) enter it only through an HMAC under the host's key; without a key only
        their names do."""
        data = asdict(self)
        data.pop("name")
        data["env"] = sorted(self.env)
        blob = json.dumps(data, sort_keys=True).encode()
        if key:
            values = json.dumps(self.env, sort_keys=True).encode()
            return hmac.new(key, blob + b"\0" + values, hashlib.sha256).hexdigest()[:16]
        return hashlib.sha256(blob).hexdigest()[:16]

    def check(self, max_ttl: int = MAX_TTL) -> None:
        """Refuse values Docker would take but the contract does not."""
        if self.name is not None and not _NAME.fullmatch(self.name):
            raise SandboxError(
                f"name {self.name!r} must be 1-128 letters, digits, '_', '.' or '-'."
            )
        if self.cpus is not None and self.cpus <= 0:
            raise SandboxError(f"cpus must be more than 0, not {self.cpus}.")
        if self.pids is not None and self.pids < 1:
            raise SandboxError(f"pids must be 1 or more, not {self.pids}.")
        reserved = sorted(k for k in self.labels if str(k).startswith(RESERVED_LABEL_PREFIX))
        if reserved:
            raise SandboxError(
                f"labels {', '.join(reserved)} are reserved ({RESERVED_LABEL_PREFIX}*: the "
                "library sets them): use a prefix of your own."
            )
        check_ttl(self.ttl, max_ttl)


@dataclass
class ExecResult:
    rc: int | None
    stdout: str
    stderr: str
    duration: float
    truncated: bool = False
    timed_out: bool = False
    # A process the command started outlived it (or the init's report was lost): the
    # sandbox was stopped.
    escaped: bool = False
    # The sandbox's own limits that fired while the command ran ("pids", "memory").
    limits_hit: list[str] = field(default_factory=list)
