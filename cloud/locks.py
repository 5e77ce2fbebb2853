"""Per-stack locks so two checks running at once never act twice on one stack: a file lock
on one machine, a DynamoDB conditional write when checks run in several places."""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from pathlib import Path


class LockHeld(Exception):
    """Another check is acting on this stack right now."""


class FileLocks:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def hold(self, stack: str):
        from filelock import FileLock, Timeout

        from dsinfra.paths import safe_name

        lock = FileLock(str(self.directory / f"{safe_name(stack)}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise LockHeld(stack) from None
        try:
            yield
        finally:
            lock.release()


class DynamoLocks:
    """A lock item per stack, taken with a conditional put. It expires after ``lease_s`` so a
    check killed while holding it does not block the next one forever."""

    PERMISSIONS = ("dynamodb:PutItem", "dynamodb:DeleteItem")

    def __init__(self, table: str, region: str | None = None, lease_s: float = 900) -> None:
        from dsinfra.cloud.aws import client

        self.table, self.lease_s = table, lease_s
        self._ddb = client("dynamodb", region)

    @contextmanager
    def hold(self, stack: str):
        owner, now = uuid.uuid4().hex, time.time()
        key = {"pk": {"S": f"lock#{stack}"}, "sk": {"S": "lock"}}
        try:
            self._ddb.put_item(
                TableName=self.table,
                Item={**key, "owner": {"S": owner}, "expires": {"N": f"{now + self.lease_s}"}},
                ConditionExpression="attribute_not_exists(pk) OR expires < :now",
                ExpressionAttributeValues={":now": {"N": f"{now}"}})
        except self._ddb.exceptions.ConditionalCheckFailedException:
            raise LockHeld(stack) from None
        try:
            yield
        finally:
            try:
                self._ddb.delete_item(TableName=self.table, Key=key,
                                      ConditionExpression="#o = :o",
                                      ExpressionAttributeNames={"#o": "owner"},
                                      ExpressionAttributeValues={":o": {"S": owner}})
            except self._ddb.exceptions.ConditionalCheckFailedException:
                pass  # our lease ran out and someone else holds it now: leave theirs alone
