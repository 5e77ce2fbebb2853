"""The in-account guard's state in one DynamoDB table (``pk``/``sk`` string keys): the spend
ledger, notices, action intents and the audit log, with the same interface as the local
SQLite ledger and JSON-lines audit log, so the check code is the same in both places.

Item layout: ``meter#<stack>`` / resource id (metered_until), ``iv#<stack>`` / ``<id>#<start>``
(one metered interval), ``note#<stack>`` / key, ``act#<stack>`` / intent id, ``audit#<day>`` /
``<time>#<uuid>``; locks (cloud/locks.py DynamoLocks) use ``lock#<stack>``.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from dsinfra.cloud.audit import who_ran_it
from dsinfra.cloud.aws import client
from dsinfra.spend import Interval, Resource

PERMISSIONS = ("dynamodb:Query", "dynamodb:Scan", "dynamodb:GetItem", "dynamodb:PutItem",
               "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem")


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def _s(value: str) -> dict:
    return {"S": value}


class DynamoLedger:
    def __init__(self, table: str, region: str | None = None) -> None:
        self.table = table
        self._ddb = client("dynamodb", region)

    def _query(self, pk: str) -> list[dict]:
        pages = self._ddb.get_paginator("query").paginate(
            TableName=self.table, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": _s(pk)}, ConsistentRead=True)
        return [item for page in pages for item in page["Items"]]

    def metered_until(self, stack: str) -> dict[str, datetime]:
        return {i["sk"]["S"]: datetime.fromisoformat(i["until"]["S"])
                for i in self._query(f"meter#{stack}")}

    def record(self, stack: str, metered: list[tuple[Resource, Interval]]) -> int:
        """Each interval and the move of its resource's ``metered_until`` in one transaction,
        conditional on nobody having metered past its start: never counted twice."""
        added = 0
        for resource, iv in metered:
            start = _iso(iv.start)
            try:
                self._ddb.transact_write_items(TransactItems=[
                    {"Update": {"TableName": self.table,
                                "Key": {"pk": _s(f"meter#{stack}"), "sk": _s(iv.resource_id)},
                                "UpdateExpression": "SET #u = :end, kind = :kind",
                                "ConditionExpression": "attribute_not_exists(#u) OR #u <= :start",
                                "ExpressionAttributeNames": {"#u": "until"},
                                "ExpressionAttributeValues": {":end": _s(_iso(iv.end)),
                                                              ":start": _s(start),
                                                              ":kind": _s(resource.kind)}}},
                    {"Put": {"TableName": self.table,
                             "Item": {"pk": _s(f"iv#{stack}"),
                                      "sk": _s(f"{iv.resource_id}#{start}"),
                                      "start": _s(start), "end": _s(_iso(iv.end)),
                                      "hourly_usd": {"N": repr(iv.hourly_usd)}}}}])
                added += 1
            except self._ddb.exceptions.TransactionCanceledException:
                continue  # a concurrent check metered it first
        return added

    def intervals(self, stack: str) -> list[Interval]:
        items = self._query(f"iv#{stack}")
        out = [Interval(i["sk"]["S"].rsplit("#", 1)[0], datetime.fromisoformat(i["start"]["S"]),
                        datetime.fromisoformat(i["end"]["S"]), float(i["hourly_usd"]["N"]))
               for i in items]
        return sorted(out, key=lambda iv: iv.start)

    def claim_notice(self, stack: str, key: str, now: datetime) -> bool:
        try:
            self._ddb.put_item(TableName=self.table,
                               Item={"pk": _s(f"note#{stack}"), "sk": _s(key),
                                     "sent_at": _s(_iso(now))},
                               ConditionExpression="attribute_not_exists(pk)")
            return True
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False

    def release_notice(self, stack: str, key: str) -> None:
        self._ddb.delete_item(TableName=self.table,
                              Key={"pk": _s(f"note#{stack}"), "sk": _s(key)})

    def _actions(self, stack: str) -> list[dict]:
        return [{"id": i["sk"]["S"], "stack": stack, "action": i["action"]["S"],
                 "state": i["state"]["S"], "started_at": float(i["started_at"]["N"]),
                 "finished_at": float(i["finished_at"]["N"]) if "finished_at" in i else None}
                for i in self._query(f"act#{stack}")]

    def open_intent(self, stack: str) -> dict | None:
        open_ = sorted((a for a in self._actions(stack) if a["state"] == "intent"),
                       key=lambda a: a["started_at"])
        return open_[0] if open_ else None

    def open_intents(self) -> list[dict]:
        pages = self._ddb.get_paginator("scan").paginate(
            TableName=self.table, FilterExpression="begins_with(pk, :p) AND #s = :intent",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":p": _s("act#"), ":intent": _s("intent")})
        return [{"id": i["sk"]["S"], "stack": i["pk"]["S"][4:], "action": i["action"]["S"]}
                for page in pages for i in page["Items"]]

    def last_finished(self, stack: str) -> float | None:
        done = [a["finished_at"] for a in self._actions(stack) if a["state"] == "done"]
        return max(done) if done else None

    def begin(self, intent_id: str, stack: str, action: str, outbox: dict | None = None) -> None:
        """The intent item carries the audit record it owes (one put: all or nothing)."""
        item = {"pk": _s(f"act#{stack}"), "sk": _s(intent_id), "action": _s(action),
                "state": _s("intent"), "started_at": {"N": repr(time.time())}}
        if outbox is not None:
            item["owe_intent"] = _s(json.dumps(outbox, default=str))
        self._ddb.put_item(TableName=self.table, Item=item)

    def finish(self, intent_id: str, result: str, reason: str, stack: str | None = None,
               outbox: dict | None = None) -> None:
        values = {":s": _s("done" if result == "done" else "failed"),
                  ":f": {"N": repr(time.time())}, ":r": _s(result), ":why": _s(reason[:2000])}
        update = "SET #s = :s, finished_at = :f, #r = :r, reason = :why"
        if outbox is not None:
            update += ", owe_result = :owe"
            values[":owe"] = _s(json.dumps(outbox, default=str))
        self._ddb.update_item(
            TableName=self.table, Key={"pk": _s(f"act#{stack}"), "sk": _s(intent_id)},
            UpdateExpression=update, ExpressionAttributeNames={"#s": "state", "#r": "result"},
            ExpressionAttributeValues=values)

    def outbox(self) -> list[dict]:
        pages = self._ddb.get_paginator("scan").paginate(
            TableName=self.table, FilterExpression="begins_with(pk, :p) AND "
            "(attribute_exists(owe_intent) OR attribute_exists(owe_result))",
            ExpressionAttributeValues={":p": _s("act#")})
        owed = [json.loads(i[key]["S"]) for page in pages for i in page["Items"]
                for key in ("owe_intent", "owe_result") if key in i]
        return sorted(owed, key=lambda r: r["kind"] != "intent")

    def delivered(self, record: dict) -> None:
        self._ddb.update_item(
            TableName=self.table,
            Key={"pk": _s(f"act#{record['stack']}"), "sk": _s(record["intent_id"])},
            UpdateExpression=f"REMOVE owe_{record['kind']}")

    def beat(self, now: datetime, ok: bool, interval_s: float | None,
             facts: dict | None = None) -> None:
        """The guard's heartbeat item: the last run, the last good one, and what the run was
        (``facts``: whether it enforced, the regions and account it read); ``plan``, ``up``
        and ``status`` read it back to say when the guard last ran (ops/enforcer.py)."""
        values = {":run": _s(_iso(now)), ":iv": {"N": repr(float(interval_s or 0))}}
        update = "SET last_run = :run, interval_s = :iv"
        if ok:
            update += ", last_good = :run"
        if facts is not None:
            update += ", facts = :facts"
            values[":facts"] = _s(json.dumps(facts, sort_keys=True))
        self._ddb.update_item(TableName=self.table, Key={"pk": _s("heartbeat"),
                                                         "sk": _s("check")},
                              UpdateExpression=update, ExpressionAttributeValues=values)

    def last_beat(self, name: str = "check") -> dict | None:
        item = self._ddb.get_item(TableName=self.table, ConsistentRead=True,
                                  Key={"pk": _s("heartbeat"), "sk": _s("check")}).get("Item")
        if not item:
            return None
        return {"last_run": item["last_run"]["S"],
                "last_good": item["last_good"]["S"] if "last_good" in item else None,
                "interval_s": float(item["interval_s"]["N"]) or None,
                "facts": json.loads(item["facts"]["S"]) if "facts" in item else {}}

    def close(self) -> None:
        pass


class DynamoAudit:
    """Audit records as DynamoDB items (a put is all-or-nothing: never half a record), each
    also printed as one JSON line so CloudWatch Logs keeps a copy."""

    def __init__(self, table: str, region: str | None = None) -> None:
        self.table, self.who = table, who_ran_it()
        self._ddb = client("dynamodb", region)

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        at = datetime.now(timezone.utc).isoformat()
        record = {"at": at, "kind": kind, "who": self.who, **fields}
        body = json.dumps(record, sort_keys=True, default=str)
        self._ddb.put_item(TableName=self.table, Item={
            "pk": _s(f"audit#{at[:10]}"), "sk": _s(f"{at}#{uuid.uuid4().hex[:8]}"),
            "record": _s(body)})
        print(body, flush=True)
        return record

    def append_once(self, kind: str, **fields: Any) -> dict[str, Any] | None:
        """The record and a marker keyed by (intent id, kind) in one transaction, conditional
        on the marker being new: a record re-sent after a crash is stored once."""
        at = datetime.now(timezone.utc).isoformat()
        record = {"at": at, "kind": kind, "who": self.who, **fields}
        body = json.dumps(record, sort_keys=True, default=str)
        try:
            self._ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table,
                         "Item": {"pk": _s(f"auditref#{fields['intent_id']}"), "sk": _s(kind)},
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": self.table, "Item": {
                    "pk": _s(f"audit#{at[:10]}"), "sk": _s(f"{at}#{uuid.uuid4().hex[:8]}"),
                    "record": _s(body)}}}])
        except self._ddb.exceptions.TransactionCanceledException:
            return None
        print(body, flush=True)
        return record

    def records(self, day: str) -> list[dict[str, Any]]:
        pages = self._ddb.get_paginator("query").paginate(
            TableName=self.table, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": _s(f"audit#{day}")})
        return [json.loads(i["record"]["S"]) for page in pages for i in page["Items"]]
