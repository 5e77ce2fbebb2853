"""The cost check's scaling step (issue 27 item 2): for each stack whose replicas run in an
Auto Scaling group, read the group and the counts its replicas publish, let
``dsinfra.autoscale.decide_scale`` say how many replicas to run within the budget, and (with
``--enforce``, as the guard runs) set the group's desired capacity.

Runs after the budget's own actions, on stacks the check vouched for (``ok`` or ``warn``): a
stack over its budget or whose spend cannot be metered completely never scales. Every scaling
action, every scale-out the budget refuses or caps and every replica whose counts cannot be
read is audited (``replicas.scale``, ``replicas.refused``, ``replicas.unreadable``; a step
that fails, ``replicas.failed``); refusals, unreadable counts and failures are notified, once
per cause (the check's notice claims). A group held
by a stop (cloud/replicas.py) is never scaled.
"""

from __future__ import annotations

import hashlib
from typing import Any

from dsinfra import autoscale as A
from dsinfra import spend as S
from dsinfra.cloud import replicas as R
from dsinfra.cloud.locks import LockHeld

SCALABLE = ("ok", "warn")


def autoscale(ctx: Any, reports: list, inventory: Any) -> None:
    """The step, for every report; one stack's failure is that stack's, never the check's."""
    for report in reports:
        resources = inventory.of(report.stack)
        groups = _group_names(resources)
        if not groups:
            continue
        if report.status not in SCALABLE or report.action not in ("none", "notify"):
            report.notes.append(f"replicas: not scaled ({report.status}, action "
                                f"{report.action})")
            continue
        try:
            if ctx.enforce:
                with ctx.locks.hold(report.stack):
                    _scale_stack(ctx, report, resources, groups)
            else:
                _scale_stack(ctx, report, resources, groups)
        except LockHeld:
            report.notes.append("replicas: not scaled, another check holds the stack's lock")
        except Exception as exc:  # noqa: BLE001 - said, audited, notified; the check goes on
            why = f"replicas: scaling step failed: {R._error(exc)}"
            report.notes.append(why)
            ctx.audit.append("replicas.failed", stack=report.stack, error=why)
            _notify_once(ctx, report, f"scale-failed:{_digest(why)}",
                         f"dsinfra: stack {report.stack}: autoscaling cannot run", why)


def _group_names(resources: list) -> dict[str, list[str]]:
    """region -> the groups the stack's instances belong to."""
    out: dict[str, set[str]] = {}
    for r in resources:
        name = (r.tags or {}).get(R.GROUP_TAG) if r.kind == "instance" else None
        if name:
            out.setdefault(r.region, set()).add(name)
    return {region: sorted(names) for region, names in out.items()}


def _replica_hourly(ctx: Any, resources: list, group: R.Group) -> float | None:
    """One replica's burn per hour: the dearest of the group's instances with its volumes, as
    the check priced them; None when the group has no instance to price."""
    members = {m.id for m in group.members}
    best = None
    for r in resources:
        if r.kind != "instance" or r.id not in members:
            continue
        usd = S.resource_hourly_price(r, ctx.prices, ctx.spot_prices).usd
        usd += sum(S.resource_hourly_price(v, ctx.prices, ctx.spot_prices).usd
                   for v in resources if v.kind == "volume"
                   and r.id in (v.attrs.get("attached_to") or ()))
        best = usd if best is None else max(best, usd)
    return best


def _scale_stack(ctx: Any, report: Any, resources: list, groups: dict[str, list[str]]) -> None:
    for region, names in sorted(groups.items()):
        found = R.groups_of(region, report.stack, names)
        strangers = sorted(set(names) - {g.name for g in found})
        if strangers:  # instances of the stack in a group that does not claim it
            report.notes.append(f"replicas: group(s) {', '.join(strangers)} in {region} do not "
                                f"carry {report.stack}'s stack tag: not scaled")
        for group in found:
            _scale_group(ctx, report, resources, group)


def _scale_group(ctx: Any, report: Any, resources: list, group: R.Group) -> None:
    stack = report.stack
    if group.held:
        report.notes.append(f"replicas: group {group.name} is held by a stop (processes "
                            "suspended); not scaled until `dsinfra start`")
        return
    serving = [m.id for m in group.members if m.serving]
    starting = sum(1 for m in group.members if m.starting)
    if group.target_error:
        loads: dict[str, A.Load | None] = {m.id: None for m in group.members
                                           if m.lifecycle == "InService"}
        error = f"target health unreadable: {group.target_error}"
        starting = 0
    else:
        loads, error = R.read_loads(group.region, stack, serving, ctx.now)
    _release_health(ctx, report, group, serving, starting)
    billing = [r for r in resources if r.kind == "instance" and r.billing
               and r.id in {m.id for m in group.members}]
    hourly = _replica_hourly(ctx, resources, group)
    if hourly is None:
        report.notes.append(f"replicas: no instance of {group.name} could be priced: no "
                            "scale-out (its projection cannot be made)")
    budget = A.ScaleBudget(
        amount_usd=report.budget_usd, spend_usd=report.spend_usd, hourly_usd=report.hourly_usd,
        replica_hourly_usd=hourly if hourly is not None else float("inf"),
        billing=len(billing), now=ctx.now, period_end=report.period_end_at,
        upfront_usd=report.upfront_usd)
    decision = A.decide_scale(loads, desired=group.desired, bounds=group.bounds(),
                              budget=budget, now_s=ctx.now.timestamp(),
                              last_scaled_s=group.last_scaled_s(), starting=starting)
    base = dict(stack=stack, group=group.name, region=group.region, current=decision.current,
                target=decision.target, wanted=decision.wanted, reason=decision.reason,
                projected_usd=decision.projected_usd, budget_usd=report.budget_usd,
                spend_usd=round(report.spend_usd, 4), enforce=ctx.enforce)
    report.notes.append(f"replicas: {group.name}: {decision.reason}")
    if decision.unreadable or error:
        why = error or f"counts missing or unreadable for {', '.join(decision.unreadable)}"
        ctx.audit.append("replicas.unreadable", **base, replicas=list(decision.unreadable),
                         error=why)
        if ctx.enforce:
            _notify_once(ctx, report, f"scale-unreadable:{group.name}:"
                         f"{_digest(','.join(decision.unreadable) + error)}",
                         f"dsinfra: stack {stack}: replica counts unreadable",
                         f"{why}. Autoscaling never scales in on missing counts; "
                         f"group {group.name} stays at {decision.target} until they read "
                         "again (see the replicas' idle watch journal).")
    if decision.blocked_by_budget:
        ctx.audit.append("replicas.refused", **base)
        if ctx.enforce:
            _notify_once(ctx, report, f"scale-refused:{group.name}:{decision.wanted}:"
                         f"{S.period_key(report.period or 'month', ctx.now)}",
                         f"dsinfra: stack {stack}: scale-out refused by the budget",
                         decision.reason)
    if not decision.changes:
        return
    if not ctx.enforce:
        report.notes.append(f"replicas: dry run, {group.name} not scaled")
        return
    ctx.audit.append("replicas.scale", **base, action=decision.action, result="pending")
    try:
        R.set_desired(group, decision.target, ctx.now)
    except Exception as exc:  # noqa: BLE001 - said, audited, notified
        ctx.audit.append("replicas.scale", **base, action=decision.action, result="failed",
                         error=R._error(exc))
        raise
    ctx.audit.append("replicas.scale", **base, action=decision.action, result="done")


def _release_health(ctx: Any, report: Any, group: R.Group, serving: list[str],
                    starting: int) -> None:
    """After ``resume``: give the group its health checks back once every replica serves."""
    if not group.health_held or not ctx.enforce:
        return
    if starting or group.target_error or len(serving) < group.desired:
        report.notes.append(f"replicas: {group.name}: health checks held until every "
                            f"replica serves ({len(serving)} of {group.desired})")
        return
    R.release(group.region, [group.name], ctx.audit.append,
              stack=report.stack, processes=R.HEALTH_PROCESSES,
              why=f"every replica serves again ({len(serving)} of {group.desired})")
    group.suspended -= set(R.HEALTH_PROCESSES)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _notify_once(ctx: Any, report: Any, key: str, subject: str, text: str) -> None:
    """One notice per cause (the check's notice claims); a failed send is tried next run."""
    if not ctx.notifier.configured:
        report.notes.append("replicas: not notified: no notification URL or SNS topic "
                            "configured (DSINFRA_WEBHOOK_URL, DSINFRA_SNS_TOPIC_ARN)")
        return
    if not ctx.ledger.claim_notice(report.stack, key, ctx.now):
        return
    try:
        failures = ctx.notifier.send(subject, text)
    except Exception as exc:  # noqa: BLE001 - a notice that crashed was not sent
        failures = [f"notifier: {type(exc).__name__}"]
    if failures:
        ctx.ledger.release_notice(report.stack, key)
    ctx.audit.append("notify", stack=report.stack, key=key,
                     result="failed" if failures else "done", failures=failures)
