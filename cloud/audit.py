"""The audit log: every decision and action of the cost check, teardown and resume, appended
as one JSON line per record and fsynced before the action it announces runs.

A record is written with a single ``write`` on an ``O_APPEND`` descriptor, ends with a newline
and carries a SHA-256 of its own content; it counts only once the newline is on disk. A crash
mid-write leaves at most a torn last line that the reader skips and the next writer fences off
with a newline: it can never be read back as a valid record.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def who_ran_it() -> str:
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return f"lambda:{os.environ['AWS_LAMBDA_FUNCTION_NAME']}"
    if os.environ.get("GITHUB_ACTIONS"):
        return f"github:{os.environ.get('GITHUB_REPOSITORY', '?')}#{os.environ.get('GITHUB_RUN_ID', '?')}"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _digest(record: dict[str, Any]) -> str:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.who = who_ran_it()

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"at": datetime.now(timezone.utc).isoformat(), "kind": kind, "who": self.who,
                  **fields}
        record["sha256"] = _digest(record)
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # fence off a torn tail so it stays one skipped line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return record

    def append_once(self, kind: str, **fields: Any) -> dict[str, Any] | None:
        """``append`` unless a valid record of ``kind`` for ``fields['intent_id']`` is there
        already (a run killed after appending it but before saying so)."""
        for record in self.records()[0]:
            if record.get("kind") == kind and record.get("intent_id") == fields["intent_id"]:
                return None
        return self.append(kind, **fields)

    def records(self) -> tuple[list[dict[str, Any]], int]:
        """(valid records in order, number of torn or corrupt lines skipped)."""
        if not self.path.exists():
            return [], 0
        good, bad = [], 0
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        if not data.endswith(b"\n") and lines[-1].strip():
            lines, bad = lines[:-1], 1  # a record counts once its newline is on disk
        for raw in lines:
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                claimed = record.pop("sha256")
            except (ValueError, KeyError, AttributeError):
                bad += 1
                continue
            if claimed != _digest(record):
                bad += 1
                continue
            good.append(record)
        return good, bad
