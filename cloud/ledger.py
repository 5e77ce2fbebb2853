"""The spend ledger: per-resource metered intervals, notices already sent and action intents.

Spend is accumulated, not recomputed: each check appends the stretch of each resource's
billing since it was last metered, so stop/start cycles and resources that are already gone
still count, and a re-run never counts an interval twice (``metered_until`` moves forward in
the same transaction that stores the interval). SQLite in the state directory by default;
``DynamoLedger`` (cloud/guard_store.py) for the in-account guard.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from dsinfra.paths import state_dir  # noqa: F401 - re-exported for the cloud modules

from dsinfra.spend import Interval, Resource

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meter (stack TEXT, resource_id TEXT, kind TEXT, region TEXT,
    metered_until TEXT, PRIMARY KEY (stack, resource_id));
CREATE TABLE IF NOT EXISTS intervals (stack TEXT, resource_id TEXT, start TEXT, end TEXT,
    hourly_usd REAL, PRIMARY KEY (stack, resource_id, start));
CREATE TABLE IF NOT EXISTS notices (stack TEXT, key TEXT, sent_at TEXT,
    PRIMARY KEY (stack, key));
CREATE TABLE IF NOT EXISTS volumes (region TEXT, id TEXT, facts TEXT,
    PRIMARY KEY (region, id));
CREATE TABLE IF NOT EXISTS actions (id TEXT PRIMARY KEY, stack TEXT, action TEXT, state TEXT,
    started_at REAL, finished_at REAL, result TEXT, reason TEXT);
CREATE TABLE IF NOT EXISTS heartbeat (name TEXT PRIMARY KEY, last_run TEXT, last_good TEXT,
    interval_s REAL, facts TEXT);
CREATE TABLE IF NOT EXISTS outbox (intent_id TEXT, kind TEXT, record TEXT,
    PRIMARY KEY (intent_id, kind));
"""


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


class SqliteLedger:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / "ledger.sqlite3"
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._batched = False  # inside batch(): writes are savepoints of one transaction
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            self._db.close()
            from dsinfra.errors import CloudError

            raise CloudError(f"the spend ledger {self.path} is corrupt ({exc}); nothing was "
                             "checked", hint="`dsinfra cost repair` rebuilds it from the audit "
                             "log and the live inventory (the corrupt file is kept aside).") \
                from None

    def _open(self) -> None:
        for attempt in range(100):
            # Two checks starting together race to create the file; switching to WAL does not
            # wait on sqlite's busy timeout, so retry briefly here.
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(_SCHEMA)
                self._add_facts_column()
                break
            except sqlite3.OperationalError:
                if attempt == 99:
                    raise
                time.sleep(0.05)

    def _add_facts_column(self) -> None:
        """A ledger written before heartbeats carried facts (issue 22) gains the column."""
        columns = [row[1] for row in self._db.execute("PRAGMA table_info(heartbeat)")]
        if "facts" not in columns:
            self._db.execute("ALTER TABLE heartbeat ADD COLUMN facts TEXT")

    @contextmanager
    def _tx(self):
        # IMMEDIATE takes the write lock up front: two checks metering the same stack queue
        # instead of both reading the same metered_until.
        if self._batched:  # one write of the batch: undone alone if it fails (a savepoint)
            self._db.execute("SAVEPOINT one")
            try:
                yield self._db
                self._db.execute("RELEASE one")
            except BaseException:
                self._db.execute("ROLLBACK TO one")
                self._db.execute("RELEASE one")
                raise
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @contextmanager
    def batch(self):
        """The writes made inside, committed together at the end (one commit, so one sync of
        the write-ahead log, instead of one per write: 100 stacks' metering, intents or
        results). Nothing inside is durable before the end, so callers make a batch only of
        writes that nothing outside this ledger depends on until it ends (the audit record an
        intent owes is appended after its batch, ops/check.py and cloud/intents.py); a kill
        inside loses the whole batch, as it lost the write it interrupted. Each write is still
        all or nothing (a savepoint); an exception out of the batch rolls the batch back.
        Nested batches are one."""
        if self._batched:
            yield self
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._batched = True
        try:
            yield self
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        finally:
            self._batched = False

    def metered_until(self, stack: str) -> dict[str, datetime]:
        rows = self._db.execute("SELECT resource_id, metered_until FROM meter WHERE stack=?",
                                (stack,))
        return {rid: _dt(until) for rid, until in rows}

    def record(self, stack: str, metered: list[tuple[Resource, Interval]]) -> int:
        """Store the intervals not metered yet; returns how many were new."""
        added = 0
        with self._tx() as db:
            for resource, iv in metered:
                row = db.execute("SELECT metered_until FROM meter WHERE stack=? AND "
                                 "resource_id=?", (stack, iv.resource_id)).fetchone()
                start = max(iv.start, _dt(row[0])) if row else iv.start
                if iv.end <= start:
                    continue
                db.execute("INSERT OR IGNORE INTO intervals VALUES (?,?,?,?,?)",
                           (stack, iv.resource_id, _iso(start), _iso(iv.end), iv.hourly_usd))
                db.execute("INSERT OR REPLACE INTO meter VALUES (?,?,?,?,?)",
                           (stack, iv.resource_id, resource.kind, resource.region, _iso(iv.end)))
                added += 1
        return added

    def intervals(self, stack: str) -> list[Interval]:
        rows = self._db.execute("SELECT resource_id, start, end, hourly_usd FROM intervals "
                                "WHERE stack=? ORDER BY start", (stack,))
        return [Interval(rid, _dt(s), _dt(e), h) for rid, s, e, h in rows]

    def stacks_in_region(self, region: str) -> list[str]:
        """The stacks this ledger has metered resources of in ``region``."""
        return [r[0] for r in self._db.execute(
            "SELECT DISTINCT stack FROM meter WHERE region=? ORDER BY 1", (region,))]

    def stacks(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT stack FROM intervals ORDER BY 1")]

    def claim_notice(self, stack: str, key: str, now: datetime) -> bool:
        """True the first time (stack, key) is claimed: a notice goes out once per crossing."""
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO notices VALUES (?,?,?)",
                             (stack, key, _iso(now)))
            return cur.rowcount == 1

    def release_notice(self, stack: str, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM notices WHERE stack=? AND key=?", (stack, key))

    def open_intent(self, stack: str) -> dict | None:
        row = self._db.execute("SELECT id, action, started_at FROM actions WHERE stack=? AND "
                               "state='intent' ORDER BY started_at LIMIT 1", (stack,)).fetchone()
        return None if row is None else {"id": row[0], "action": row[1], "started_at": row[2]}

    def open_intents(self) -> list[dict]:
        rows = self._db.execute("SELECT id, stack, action FROM actions WHERE state='intent'")
        return [{"id": i, "stack": s, "action": a} for i, s, a in rows]

    def last_finished(self, stack: str) -> float | None:
        row = self._db.execute("SELECT MAX(finished_at) FROM actions WHERE stack=? AND "
                               "state='done'", (stack,)).fetchone()
        return row[0] if row else None

    def begin(self, intent_id: str, stack: str, action: str, outbox: dict | None = None) -> None:
        """The intent, and the audit record it owes (cloud/intents.py), in one transaction."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO actions VALUES (?,?,?,?,?,?,?,?)",
                       (intent_id, stack, action, "intent", time.time(), None, None, None))
            self._owe(db, intent_id, outbox)

    def finish(self, intent_id: str, result: str, reason: str, stack: str | None = None,
               outbox: dict | None = None) -> None:
        state = "done" if result == "done" else "failed"
        with self._tx() as db:
            db.execute("UPDATE actions SET state=?, finished_at=?, result=?, reason=? "
                       "WHERE id=?", (state, time.time(), result, reason, intent_id))
            self._owe(db, intent_id, outbox)

    @staticmethod
    def _owe(db, intent_id: str, record: dict | None) -> None:
        if record is not None:
            db.execute("INSERT OR REPLACE INTO outbox VALUES (?,?,?)",
                       (intent_id, record["kind"], json.dumps(record, default=str)))

    def outbox(self) -> list[dict]:
        """Audit records owed by a run that died before appending them, oldest first."""
        rows = self._db.execute("SELECT record FROM outbox ORDER BY rowid")
        return [json.loads(r[0]) for r in rows]

    def delivered(self, record: dict) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM outbox WHERE intent_id=? AND kind=?",
                       (record["intent_id"], record["kind"]))

    def resume_metering_at(self, stack: str, resources: list[Resource], at: datetime) -> None:
        """Meter ``resources`` from ``at`` on (``dsinfra cost repair``)."""
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO meter VALUES (?,?,?,?,?)",
                           [(stack, r.id, r.kind, r.region, _iso(at)) for r in resources])

    def beat(self, now: datetime, ok: bool, interval_s: float | None,
             facts: dict | None = None) -> None:
        """Record that a check ran (and whether it was good: every region read, nothing
        failed); ``status`` and ``cost report`` warn when the last good one is too old.

        A run started by ``schedule install``'s timer (its interval known) also writes the
        ``schedule`` row with ``facts`` (whether it enforced, the regions and account it read):
        a check run by hand never refreshes it, so only the schedule's own runs can vouch for
        it as a stack's enforcer (ops/enforcer.py)."""
        names = ("check", "schedule") if interval_s else ("check",)
        with self._tx() as db:
            for name in names:
                row = db.execute("SELECT last_good FROM heartbeat WHERE name=?",
                                 (name,)).fetchone()
                good = _iso(now) if ok else (row[0] if row else None)
                db.execute("INSERT OR REPLACE INTO heartbeat VALUES (?,?,?,?,?)",
                           (name, _iso(now), good, interval_s,
                            json.dumps(facts, sort_keys=True) if facts is not None else None))

    def last_beat(self, name: str = "check") -> dict | None:
        """The last run of the check (``check``: any whole-account run) or of the scheduled
        check only (``schedule``)."""
        row = self._db.execute("SELECT last_run, last_good, interval_s, facts FROM heartbeat "
                               "WHERE name=?", (name,)).fetchone()
        return None if row is None else {"last_run": row[0], "last_good": row[1],
                                         "interval_s": row[2],
                                         "facts": json.loads(row[3]) if row[3] else {}}

    def known_volumes(self) -> dict[str, dict[str, dict]]:
        """region -> volume id -> facts, as remembered by ``remember_volumes``."""
        known: dict[str, dict[str, dict]] = {}
        for region, vid, facts in self._db.execute("SELECT region, id, facts FROM volumes"):
            known.setdefault(region, {})[vid] = json.loads(facts)
        return known

    def remember_volumes(self, volumes: list[Resource]) -> None:
        from dsinfra.cloud.inventory import volume_facts

        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO volumes VALUES (?,?,?)",
                           [(v.region, v.id, json.dumps(volume_facts(v))) for v in volumes])

    def close(self) -> None:
        self._db.close()
