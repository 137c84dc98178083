"""A canary secret and the forms it could leak in: the harness every secret-handling test
uses (the sandbox library's env, stdin and file content today; credential injection next).

A test passes the canary wherever a secret goes in, collects every text a user or another
tenant can read afterwards (module results with their invocation and diff, audit lines,
container labels, logs), and asserts none of them carries the canary in any form."""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Canary:
    value: str = field(default_factory=lambda: f"fortress-canary-{uuid.uuid4().hex}")

    def forms(self) -> dict[str, str]:
        """The canary as it could appear: plain, base64, and its unkeyed sha256 (a hash of
        a short secret is the secret: it is recovered by trying every value)."""
        raw = self.value.encode()
        return {
            "plain": self.value,
            "base64": base64.b64encode(raw).decode(),
            "sha256": hashlib.sha256(raw).hexdigest(),
        }

    def leaks(self, **texts: str) -> list[str]:
        """'where: form' for each text that carries a form of the canary."""
        return [
            f"{where}: {form}"
            for where, text in texts.items()
            for form, needle in self.forms().items()
            if needle in text
        ]
