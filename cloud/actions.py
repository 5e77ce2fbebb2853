"""The only code that changes the world for a budget: a registry of action classes, as Cloud
Custodian keeps its actions (c7n/actions/core.py). Each declares its ``name``, the IAM actions
it needs (``permissions``; a destructive one is marked ``tag_scoped`` and only ever granted on
resources carrying the ``dsinfra:stack`` tag) and ``run()``. The check dispatches by name;
the guard's allowed actions and its role's policy are derived from this list
(``policy_document``), and ``dsinfra guard permissions --json`` prints that document. Every
action is idempotent: it acts only on what reality says still needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from dsinfra import tags as T
from dsinfra.cloud import intents, inventory, notices, regions
from dsinfra.cloud.aws import client
from dsinfra.cloud.teardown import sweep_stacks
from dsinfra.errors import DsinfraError
from dsinfra.spend import Resource


@dataclass(frozen=True)
class Permission:
    action: str
    tag_scoped: bool = False  # destructive: allowed only where aws:ResourceTag/dsinfra:stack


def reads(*names: str) -> tuple[Permission, ...]:
    return tuple(Permission(n) for n in names)


def scoped(*names: str) -> tuple[Permission, ...]:
    return tuple(Permission(n, tag_scoped=True) for n in names)


REGISTRY: dict[str, type[BudgetAction]] = {}


def register(cls: type[BudgetAction]) -> type[BudgetAction]:
    REGISTRY[cls.name] = cls
    return cls


class BudgetAction:
    name: ClassVar[str]
    permissions: ClassVar[tuple[Permission, ...]]
    budget: ClassVar[bool] = True  # False: run by a person (resume), never by the guard

    def run(self, ctx: Any, reports: list, found: inventory.Inventory) -> None:
        # Only budget actions run inside a check; a person's action (resume) has its own path.
        raise TypeError(f"the {self.name!r} action is not run by the cost check")


@register
class Notify(BudgetAction):
    name = "notify"
    permissions = (Permission("sns:Publish"),)

    def run(self, ctx, reports, found) -> None:
        for report in reports:
            notices.notify(ctx, report)


def running_instances(resources: list[Resource]) -> list[Resource]:
    return [r for r in resources if r.kind == "instance" and r.state in ("pending", "running")]


def stop_instances(instances: list[Resource]) -> list[str]:
    """Stop ``instances`` (volumes stay); returns the ids asked to stop."""
    by_region: dict[str, list[str]] = {}
    for r in instances:
        by_region.setdefault(r.region, []).append(r.id)
    for region, ids in by_region.items():
        ec2 = client("ec2", region)
        for start in range(0, len(ids), 1000):
            ec2.stop_instances(InstanceIds=ids[start:start + 1000])
    return [r.id for r in instances]


@register
class Stop(BudgetAction):
    name = "stop"
    permissions = scoped("ec2:StopInstances")

    def run(self, ctx, reports, found) -> None:
        for report in reports:
            targets = running_instances(found.of(report.stack))
            if not targets:
                report.action_result = "skipped"
                report.reason += "; no running instances (already stopped)"
                pending = ctx.ledger.open_intent(report.stack)
                if pending is not None:
                    intents.finish(ctx.ledger, ctx.audit, pending["id"], report.stack,
                                   pending["action"], "done",
                                   "reconciled: the instances were already stopped")
                continue
            intent = intents.begin_or_resume(ctx, report)
            try:
                stopped = stop_instances(targets)
                report.action_result = "done"
                report.reason += f"; stopped {len(stopped)} instance(s), volumes kept " \
                                 f"(`dsinfra resume {report.stack}` starts them)"
            except Exception as exc:  # noqa: BLE001 - one stack's failure must not stop the rest
                report.action_result, report.reason = "failed", f"{report.reason}; stop: {exc}"
            intents.finish(ctx.ledger, ctx.audit, intent, report.stack, "stop",
                           report.action_result, report.reason)


@register
class Destroy(BudgetAction):
    name = "destroy"
    permissions = reads("ec2:DescribeSpotInstanceRequests",
                        "elasticloadbalancing:DescribeTargetGroups") + scoped(
        "ec2:TerminateInstances", "ec2:CancelSpotInstanceRequests", "ec2:DisassociateAddress",
        "ec2:ReleaseAddress", "ec2:DeleteNatGateway", "ec2:DeleteVolume",
        "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:DeleteTargetGroup")

    def run(self, ctx, reports, found) -> None:
        if not reports:
            return
        ids = {r.stack: intents.begin_or_resume(ctx, r) for r in reports}
        pulumi_state = {r.stack: _pulumi_destroy(ctx, r.stack) for r in reports}
        subset = inventory.Inventory(found.regions,
                                     [r for r in found.resources if r.stack in ids])
        error = ""
        try:
            results = sweep_stacks(list(ids), found.regions, inventory=subset, sleep=ctx.sleep)
        except Exception as exc:  # noqa: BLE001 - report per stack, keep the check alive
            results, error = {}, f"sweep failed: {exc}"
        for report in reports:
            outcome = results.get(report.stack)
            report.action_result = "done" if outcome is not None and outcome.clean else "failed"
            detail = outcome.summary if outcome is not None else error
            prefix = pulumi_state.get(report.stack)
            report.reason += f"; {prefix + '; ' if prefix else ''}{detail}"
            intents.finish(ctx.ledger, ctx.audit, ids[report.stack], report.stack, "destroy",
                           report.action_result, report.reason)


def _pulumi_destroy(ctx, stack: str) -> str | None:
    engine = ctx.engine_for(stack)
    if engine is None:
        return None
    try:
        engine.destroy(stack)
        return "pulumi destroy done"
    except DsinfraError as exc:
        return f"pulumi destroy failed ({exc.message}), swept"
    except Exception as exc:  # noqa: BLE001 - the sweep still runs
        return f"pulumi destroy failed ({type(exc).__name__}), swept"


@register
class Resume(BudgetAction):
    """``dsinfra resume``: start what a budget stopped. A person's action, never the guard's."""

    name = "resume"
    budget = False
    permissions = reads("ec2:DescribeInstances") + scoped("ec2:StartInstances")


def resume_stack(stack: str, where: Sequence[str]) -> list[str]:
    """Start the stopped instances of ``stack``; returns their ids (empty when none were)."""
    found = inventory.fetch_inventory(where, [stack], kinds=("instance",)).resources
    stopped = [r for r in found if r.state == "stopped"]
    for region in {r.region for r in stopped}:
        client("ec2", region).start_instances(
            InstanceIds=[r.id for r in stopped if r.region == region])
    return [r.id for r in stopped]


BUDGET_ACTIONS = tuple(name for name, cls in REGISTRY.items() if cls.budget)
# What every check reads, whatever it does: the inventory and the region discovery.
CHECK_READS = reads(*inventory.PERMISSIONS, *regions.PERMISSIONS)


def permissions_for(allowed: Sequence[str] = BUDGET_ACTIONS) -> list[Permission]:
    """The check's reads plus what each of ``allowed`` declares, unique, sorted by action."""
    unknown = [a for a in allowed if a not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown actions {unknown}; registered: {sorted(REGISTRY)}")
    found = {p.action: p for p in CHECK_READS}
    for name in allowed:
        for p in REGISTRY[name].permissions:
            found[p.action] = Permission(p.action, p.tag_scoped or
                                         found.get(p.action, p).tag_scoped)
    return sorted(found.values(), key=lambda p: p.action)


def check_permissions(allowed: Sequence[str] = BUDGET_ACTIONS) -> list[str]:
    """Every IAM action a check that may take ``allowed`` needs, sorted and unique."""
    return [p.action for p in permissions_for(allowed)]


TAG_CONDITION = {"Null": {f"aws:ResourceTag/{T.STACK}": "false"}}


def policy_document(allowed: Sequence[str] = BUDGET_ACTIONS, *, table_arn: str | None = None,
                    log_group_arn: str | None = None, sns_topic_arn: str | None = None,
                    extra_reads: Sequence[str] = ()) -> dict:
    """The IAM policy for a role that runs checks taking ``allowed``: reads on ``*``, every
    destructive action only on resources tagged ``dsinfra:stack``, the guard's table and log
    group when given, SNS only on its topic. Nothing wildcarded in an action name."""
    perms = permissions_for(allowed)
    publish = [p for p in perms if p.action == "sns:Publish"]
    read = sorted({p.action for p in perms if not p.tag_scoped and p not in publish}
                  | set(extra_reads))
    statements = [
        {"Sid": "InventoryByTag", "Effect": "Allow", "Action": read, "Resource": "*"},
        {"Sid": "ActOnlyOnTaggedResources", "Effect": "Allow",
         "Action": [p.action for p in perms if p.tag_scoped], "Resource": "*",
         "Condition": TAG_CONDITION},
    ]
    if table_arn:
        from dsinfra.cloud.guard_store import PERMISSIONS as TABLE_PERMISSIONS

        statements.append({"Sid": "LedgerAndLocks", "Effect": "Allow",
                           "Action": sorted(TABLE_PERMISSIONS), "Resource": table_arn})
    if log_group_arn:
        statements.append({"Sid": "Logs", "Effect": "Allow",
                           "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                           "Resource": f"{log_group_arn}:*"})
    if publish and sns_topic_arn:
        statements.append({"Sid": "Notify", "Effect": "Allow", "Action": ["sns:Publish"],
                           "Resource": sns_topic_arn})
    return {"Version": "2012-10-17", "Statement": [s for s in statements if s["Action"]]}
