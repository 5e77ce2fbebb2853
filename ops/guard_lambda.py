"""The in-account guard's Lambda handler: the same cost check as ``dsinfra cost check``, with
its ledger, audit log and locks in DynamoDB. It cannot run Pulumi, so ``destroy`` is the tag
sweep (terminate, release, delete, verify).

Runs on the Lambda Python runtime with only boto3 available: this module and everything it
imports stays free of pydantic, typer, rich, pulumi and filelock (tests/cost/test_guard.py
runs it from the packaged zip with those imports blocked).

Environment: DSINFRA_GUARD_TABLE (required), DSINFRA_REGIONS (comma-separated; default the
function's region), DSINFRA_GUARD_ENFORCE ("true" to act; anything else is a dry run),
DSINFRA_WEBHOOK_URL and/or DSINFRA_SNS_TOPIC_ARN.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from dsinfra.ops.check import CheckContext, run_check
from dsinfra.cloud.guard_store import DynamoAudit, DynamoLedger
from dsinfra.cloud.locks import DynamoLocks
from dsinfra.cloud.notify import Notifier


def guard_context(now: datetime | None = None) -> CheckContext:
    table = os.environ["DSINFRA_GUARD_TABLE"]
    home = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    regions = tuple(r.strip() for r in os.environ.get("DSINFRA_REGIONS", home or "").split(",")
                    if r.strip())
    ctx = CheckContext(regions=regions, ledger=DynamoLedger(table, home),
                       audit=DynamoAudit(table, home), locks=DynamoLocks(table, home),
                       notifier=Notifier.from_env(),
                       enforce=os.environ.get("DSINFRA_GUARD_ENFORCE", "").lower() == "true")
    if now is not None:
        ctx.now = now
    return ctx


def handler(event: dict | None, context: Any = None) -> dict:
    """EventBridge Scheduler invokes this with an empty event; ``{"now": ISO}`` rehearses."""
    now = None
    if event and event.get("now"):
        now = datetime.fromisoformat(str(event["now"]).replace("Z", "+00:00"))
        now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    from dsinfra.cloud.aws import set_deadline
    from dsinfra.ops.check import record_heartbeat

    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        # stop starting AWS calls 30 s before Lambda kills the run mid-write
        set_deadline(max(1.0, context.get_remaining_time_in_millis() / 1000 - 30))
    ctx = guard_context(now)
    result = run_check(ctx)
    record_heartbeat(ctx, result)
    return result
