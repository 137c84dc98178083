# Copyright: Fortress developers
# Apache-2.0
"""The audit log: one JSON line per lifecycle event, rotated; env values never appear."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import time
from typing import Any

from .contract import AUDIT_BACKUPS, AUDIT_MAX_BYTES


class AuditLog:
    """One JSON line per lifecycle event, rotated; env values never appear."""

    def __init__(self, path: str | None, max_bytes: int = AUDIT_MAX_BYTES) -> None:
        self._logger: logging.Logger | None = None
        if path:
            os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
            logger = logging.getLogger(f"fortress.sandbox.audit.{path}")
            if not logger.handlers:
                handler = logging.handlers.RotatingFileHandler(
                    path, maxBytes=max_bytes, backupCount=AUDIT_BACKUPS
                )
                handler.setFormatter(logging.Formatter("%(message)s"))
                logger.addHandler(handler)
                logger.setLevel(logging.INFO)
                logger.propagate = False
                os.chmod(path, 0o640)
            self._logger = logger

    def event(self, event: str, **data: Any) -> None:
        if self._logger:
            record = {"time": time.time(), "event": event, **data}
            self._logger.info(json.dumps(record, sort_keys=True, default=str))
