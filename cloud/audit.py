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
from collections.abc import Iterator
from contextlib import contextmanager
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
        # append_once's index of (kind, intent_id) and how far the file has been read into it:
        # each call reads only what was appended since (by anyone), not the whole log again
        self._once: set[tuple[Any, Any]] = set()
        self._read_to = 0
        self._pending: list[bytes] | None = None  # inside batch(): lines not yet written
        self._pending_once: set[tuple[Any, Any]] = set()

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"at": datetime.now(timezone.utc).isoformat(), "kind": kind, "who": self.who,
                  **fields}
        record["sha256"] = _digest(record)
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        if self._pending is not None:
            self._pending.append(line)
            self._pending_once.add((kind, fields.get("intent_id")))
        else:
            self._write(line)
        return record

    @contextmanager
    def batch(self) -> Iterator["AuditLog"]:
        """Records appended inside are written at the end in one ``write`` and one fsync,
        instead of one each (a check's 100 decisions; the intents of one action on 100
        stacks). None of them is on disk before the end, so a caller acts on a record (runs
        the action it announces, deletes the ledger's outbox row) only after its batch:
        cloud/intents.py does. A kill inside loses the batch, as it lost the record being
        written; an exception out of it still writes what was appended. Whole lines only:
        a torn write leaves whole records before the torn one, which the reader skips."""
        if self._pending is not None:
            yield self
            return
        self._pending, self._pending_once = [], set()
        try:
            yield self
        except Exception:
            self._flush()
            raise
        except BaseException:
            self._pending = None  # the process is going: nothing more is written
            raise
        self._flush()

    def _flush(self) -> None:
        lines, self._pending = self._pending or [], None
        self._pending_once = set()
        if lines:
            self._write(b"".join(lines))

    def _write(self, line: bytes) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # fence off a torn tail so it stays one skipped line
            while line:  # a regular file takes it whole; a short write goes on from there
                line = line[os.write(fd, line):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def append_once(self, kind: str, **fields: Any) -> dict[str, Any] | None:
        """``append`` unless a valid record of ``kind`` for ``fields['intent_id']`` is there
        already (a run killed after appending it but before saying so)."""
        self._catch_up()
        if (kind, fields["intent_id"]) in self._once | self._pending_once:
            return None
        return self.append(kind, **fields)

    def _catch_up(self) -> None:
        """Add the records appended since the last call to ``_once`` (complete lines only: a
        torn tail is left for the next call, which sees it fenced off and skips it)."""
        try:
            with open(self.path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size < self._read_to:  # replaced (repair)
                    self._once, self._read_to = set(), 0
                handle.seek(self._read_to)
                data = handle.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        for raw in data[:end].split(b"\n"):
            record = _valid(raw)
            if record is not None:
                self._once.add((record.get("kind"), record.get("intent_id")))
        self._read_to += end

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
            record = _valid(raw)
            if record is None:
                bad += 1
                continue
            good.append(record)
        return good, bad


def _valid(raw: bytes) -> dict[str, Any] | None:
    """One line's record when it is whole and its digest matches; None otherwise (blank too)."""
    if not raw.strip():
        return None
    try:
        record = json.loads(raw)
        claimed = record.pop("sha256")
    except (ValueError, KeyError, AttributeError, TypeError):
        return None
    return record if claimed == _digest(record) else None
