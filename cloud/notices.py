"""Budget notices: one per crossing, through ``Notifier`` (cloud/notify.py). A claim in the
ledger makes a re-run silent; a send that fails or crashes gives its claim back, so the next
run tries again instead of the notice being lost."""

from __future__ import annotations

import hashlib
from typing import Any

from dsinfra import spend as S


def notice_key(ctx: Any, report: Any) -> str:
    """One notice per crossing: the key holds the status, the period and the budget, so a new
    month, a raised budget or a new crossing notifies again, a re-run does not. A ``failed``
    stack's key holds its cause instead: a new cause is a new crossing."""
    period = S.period_key(report.period or "month", ctx.now)
    if report.status == "failed":
        cause = report.reason.split("; the budget alone would say")[0]
        return f"failed:{period}:{hashlib.sha256(cause.encode()).hexdigest()[:16]}"
    return f"{report.status}:{period}:{report.budget_usd}"


def notice_text(report: Any) -> str:
    budget = f"${report.budget_usd:,.2f}" if report.budget_usd is not None else "unknown budget"
    return (f"{report.reason}\nspend ${report.spend_usd:,.2f} of {budget} "
            f"({report.period or 'unknown period'}); burn ${report.hourly_usd:,.2f}/h; "
            f"forecast ${report.forecast_usd:,.2f}; action {report.action}: "
            f"{report.action_result}")


def notify(ctx: Any, report: Any) -> None:
    key = notice_key(ctx, report)
    if not ctx.notifier.configured:
        if report.action == "notify":
            report.action_result = "skipped"
            report.reason += "; no notification URL or SNS topic configured " \
                             "(DSINFRA_WEBHOOK_URL, DSINFRA_SNS_TOPIC_ARN)"
        return
    if not ctx.ledger.claim_notice(report.stack, key, ctx.now):
        if report.action == "notify":
            report.action_result = "skipped"
            report.reason += "; already notified for this crossing"
        return
    try:
        failures = ctx.notifier.send(f"dsinfra: stack {report.stack} {report.status}",
                                     notice_text(report))
    except Exception as exc:  # noqa: BLE001 - a notice that crashed was not sent
        failures = [f"notifier: {type(exc).__name__}"]
    if failures:
        ctx.ledger.release_notice(report.stack, key)  # try again next run
    if report.action == "notify":
        report.action_result = "failed" if failures else "done"
        if failures:
            report.reason += f"; notification failed: {', '.join(failures)}"
    ctx.audit.append("notify", stack=report.stack, key=key,
                     result="failed" if failures else "done", failures=failures)


def notify_unreadable(ctx: Any, why: str) -> None:
    """The check could not read AWS at all: one notice per day, released if it fails."""
    if not ctx.notifier.configured:
        return
    key = f"unreadable:{ctx.now:%Y-%m-%d}"
    if not ctx.ledger.claim_notice("*", key, ctx.now):
        return
    try:
        failures = ctx.notifier.send("dsinfra: the cost check cannot read AWS",
                                     f"{why}\nNo budget is being enforced until this is fixed.")
    except Exception as exc:  # noqa: BLE001 - a notice that crashed was not sent
        failures = [type(exc).__name__]
    if failures:
        ctx.ledger.release_notice("*", key)
    ctx.audit.append("notify", stack="*", key=key, result="failed" if failures else "done",
                     failures=failures)
