"""The only code that changes the world for a budget: one runner per *effect* of the action
table (dsinfra/budget_actions.py), as Cloud Custodian dispatches actions from its registry
(c7n/actions/core.py). The table says which actions exist, what IAM each needs and how it is
carried out; this module carries out each kind once (``RUNNERS``) and refuses to import when the
table names an effect it has no runner for, so an action that would be accepted and then do
nothing cannot exist. The check dispatches by name (``runner``); the guard's allowed actions and
its role's policy are derived from the table (``policy_document``), and ``dsinfra guard
permissions --json`` prints that document. Every action is idempotent: it acts only on what
reality says still needs it.
"""

from __future__ import annotations

import abc

from collections.abc import Sequence
from typing import Any

from dsinfra import budget_actions as A
from dsinfra import tags as T
from dsinfra.budget_actions import Permission, reads, scoped  # noqa: F401 - re-exported
from dsinfra.cloud import intents, inventory, notices, regions, replicas, spot_stop
from dsinfra.cloud.aws import client
from dsinfra.cloud.teardown import sweep_stacks
from dsinfra.errors import DsinfraError
from dsinfra.spend import Resource


class Runner(abc.ABC):
    """Carries out one action of the table (``spec``) on the reports that decided it; each
    effect the table names has a concrete subclass (checked when this module is imported)."""

    def __init__(self, spec: A.ActionSpec) -> None:
        self.spec = spec

    @abc.abstractmethod
    def run(self, ctx: Any, reports: list, found: inventory.Inventory) -> None:
        """Act on ``reports``; the subclasses below are the only implementations."""


class NotifyRunner(Runner):
    def run(self, ctx, reports, found) -> None:
        for report in reports:
            notices.notify(ctx, report)


def running_instances(resources: list[Resource],
                      states: Sequence[str] = ("pending", "running")) -> list[Resource]:
    return [r for r in resources if r.kind == "instance" and r.state in states]


def call_instances(instances: list[Resource], call: str = "stop_instances",
                   call_args: Sequence[tuple[str, object]] = ()) -> list[str]:
    """Make the EC2 ``call`` (stop_instances, ...) on ``instances``, 1,000 ids a request, per
    region; returns the ids it was made for."""
    by_region: dict[str, list[str]] = {}
    for r in instances:
        by_region.setdefault(r.region, []).append(r.id)
    for region, ids in by_region.items():
        operation = getattr(client("ec2", region), call)
        for start in range(0, len(ids), 1000):
            operation(InstanceIds=ids[start:start + 1000], **dict(call_args))
    return [r.id for r in instances]


def stop_instances(instances: list[Resource]) -> list[str]:
    """Stop ``instances`` (volumes stay); returns the ids asked to stop."""
    return call_instances(instances, "stop_instances")


class InstancesRunner(Runner):
    """One EC2 call on the stack's instances in the row's ``from_states`` (stop, hibernate)."""

    def run(self, ctx, reports, found) -> None:
        spec, verb = self.spec, self.spec.call.removesuffix("_instances")
        for report in reports:
            targets = running_instances(found.of(report.stack), spec.from_states)
            if not targets:
                report.action_result = "skipped"
                report.reason += f"; no instances {'/'.join(spec.from_states)} " \
                                 f"(already {spec.name} or never started)"
                pending = ctx.ledger.open_intent(report.stack)
                if pending is not None:
                    intents.finish(ctx.ledger, ctx.audit, pending["id"], report.stack,
                                   pending["action"], "done",
                                   f"reconciled: no instance was left to {spec.name}")
                continue
            intent = intents.begin_or_resume(ctx, report)
            try:
                if spec.call == "stop_instances":
                    self._stop(ctx, report, targets)
                else:
                    acted = call_instances(targets, spec.call, spec.call_args)
                    report.action_result = "done"
                    report.reason += "; " + (spec.done_note or "{action}: {call} for {n} "
                                             "instance(s)").format(
                        stack=report.stack, n=len(acted), action=spec.name, call=verb)
            except Exception as exc:  # noqa: BLE001 - one stack's failure must not stop the rest
                report.action_result, report.reason = "failed", \
                    f"{report.reason}; {spec.name}: {exc}"
            intents.finish(ctx.ledger, ctx.audit, intent, report.stack, spec.name,
                           report.action_result, report.reason)


    def _stop(self, ctx, report, targets: list[Resource]) -> None:
        """A stop AWS may refuse on some instances (dsinfra/stoppable.py): StopInstances on
        the others; the refused ones as the row's ``unable`` says (a budget rule the user set
        is their consent: notice, audit, then terminate)."""
        spec, outcomes = self.spec, []
        by_region: dict[str, list[Resource]] = {}
        for r in targets:
            by_region.setdefault(r.region, []).append(r)
        for region, mine in sorted(by_region.items()):
            outcomes.append(spot_stop.stop_or_terminate(
                client("ec2", region), [spot_stop.instance_from_resource(r) for r in mine],
                stack=report.stack, trigger=f"the budget rule onExceed {spec.name} "
                f"({report.reason})", unable=spec.unable,
                announce=lambda subject, text: _announce(ctx, subject, text),
                audit=ctx.audit.append, call_args=spec.call_args))
        stopped = [i for o in outcomes for i in o.stopped]
        terminated = [i for o in outcomes for i in o.terminated]
        problems = [p for o in outcomes for p in o.problems]
        notes = []
        if stopped:
            notes.append((spec.done_note or "{action}: {call} for {n} instance(s)").format(
                stack=report.stack, n=len(stopped), action=spec.name,
                call=spec.call.removesuffix("_instances")))
        if terminated:
            sent = "; ".join(o.notice for o in outcomes if o.terminated)
            notes.append(f"terminated {', '.join(terminated)}: AWS cannot stop "
                         f"{'it' if len(terminated) == 1 else 'them'} (notice {sent}; "
                         f"`dsinfra up {report.stack}` launches the node(s) again)")
        report.action_result = "failed" if problems else "done"
        report.reason += "".join(f"; {n}" for n in notes + problems)


def _announce(ctx, subject: str, text: str) -> str:
    """The notice before a termination, through the check's notifier; returns where it went
    (the audit record keeps it either way)."""
    if not ctx.notifier.configured:
        return "not sent: no notification URL or SNS topic configured (DSINFRA_WEBHOOK_URL, " \
               "DSINFRA_SNS_TOPIC_ARN); the audit record is the notice"
    try:
        failures = ctx.notifier.send(subject, text)
    except Exception as exc:  # noqa: BLE001 - a notice that crashed was not sent
        failures = [f"notifier: {type(exc).__name__}"]
    return f"failed: {', '.join(failures)}" if failures else "sent"


class SweepRunner(Runner):
    def run(self, ctx, reports, found) -> None:
        if not reports:
            return
        ids = intents.begin_or_resume_all(ctx, reports)  # every intent durable first
        pulumi_state = {r.stack: _pulumi_destroy(ctx, r.stack) for r in reports}
        subset = inventory.Inventory(found.regions,
                                     [r for r in found.resources if r.stack in ids])
        error = ""
        try:
            results = sweep_stacks(list(ids), found.regions, inventory=subset, sleep=ctx.sleep,
                                   audit=ctx.audit.append)
        except Exception as exc:  # noqa: BLE001 - report per stack, keep the check alive
            results, error = {}, f"sweep failed: {exc}"
        for report in reports:
            outcome = results.get(report.stack)
            report.action_result = "done" if outcome is not None and outcome.clean else "failed"
            detail = outcome.summary if outcome is not None else error
            prefix = pulumi_state.get(report.stack)
            report.reason += f"; {prefix + '; ' if prefix else ''}{detail}"
        intents.finish_all(ctx.ledger, ctx.audit, [
            (ids[r.stack], r.stack, self.spec.name, r.action_result, r.reason, {})
            for r in reports])


class ManualRunner(Runner):
    def run(self, ctx, reports, found) -> None:
        # Only budget actions run inside a check; a person's action (resume) has its own path.
        raise TypeError(f"the {self.spec.name!r} action is not run by the cost check")


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


def resume_stack(stack: str, where: Sequence[str], audit=None) -> list[str]:
    """Start the stopped instances of ``stack``; returns their ids (empty when none were).
    A replicas group a stop held (cloud/replicas.py) gets its processes back once its
    instances are started, all but the health checks, which the scaling step gives back when
    every replica serves again; each release is audited (``audit``: the log's append)."""
    found = inventory.fetch_inventory(where, [stack], kinds=("instance",)).resources
    stopped = [r for r in found if r.state == "stopped"]
    for region in {r.region for r in stopped}:
        client("ec2", region).start_instances(
            InstanceIds=[r.id for r in stopped if r.region == region])
    for region in sorted({r.region for r in found}):
        names = replicas.groups_of_instances([r for r in found if r.region == region])
        held = [g.name for g in replicas.groups_of(region, stack, names) if g.held] \
            if names else []
        if held:
            replicas.release(region, held, audit or (lambda kind, **fields: None),
                             stack=stack, processes=replicas.start_processes(),
                             why="dsinfra start: the stack's instances are started")
    return [r.id for r in stopped]


RUNNERS: dict[str, type[Runner]] = {"notify": NotifyRunner, "instances": InstancesRunner,
                                     "sweep": SweepRunner, "manual": ManualRunner}
# The import-time check: every effect the table may name has exactly one runner here.
if set(RUNNERS) != set(A.EFFECTS):
    raise ImportError(f"cloud/actions.py runs effects {sorted(RUNNERS)} but the action table "
                      f"(dsinfra/budget_actions.py) names {sorted(A.EFFECTS)}")
for _spec in A.TABLE.values():
    if _spec.effect not in RUNNERS:  # pragma: no cover - register() refuses these already
        raise ImportError(f"action {_spec.name!r} has no runner for effect {_spec.effect!r}")


def runner(name: str) -> Runner:
    """The runner for the action ``name`` of the table (KeyError for an unknown name)."""
    spec = A.get(name)
    return RUNNERS[spec.effect](spec)


def budget_actions() -> tuple[str, ...]:
    """The actions a guard may take: the table's onExceed names (read now, not at import)."""
    return A.on_exceed()
# What every check reads, whatever it does: the inventory, the region discovery and the
# replicas' groups and counts (the scaling step, ops/scale.py).
CHECK_READS = reads(*inventory.PERMISSIONS, *regions.PERMISSIONS, *replicas.READS)
# What the scaling step writes, whatever the stack's onExceed: a replicas group's desired
# capacity and its scaled-at tag, on groups tagged with a stack only; and the health checks a
# resumed group gets back.
CHECK_WRITES = scoped(*replicas.WRITES, *replicas.START_WRITES)


def permissions_for(allowed: Sequence[str] | None = None) -> list[Permission]:
    """The check's reads plus what each of ``allowed`` (default: every budget action of the
    table) declares, unique, sorted by action."""
    allowed = budget_actions() if allowed is None else allowed
    unknown = [a for a in allowed if a not in A.TABLE]
    if unknown:
        raise ValueError(f"unknown actions {unknown}; registered: {sorted(A.TABLE)}")
    found = {p.action: p for p in (*CHECK_READS, *CHECK_WRITES)}
    for name in allowed:
        for p in A.get(name).permissions:
            found[p.action] = Permission(p.action, p.tag_scoped or
                                         found.get(p.action, p).tag_scoped)
    return sorted(found.values(), key=lambda p: p.action)


def check_permissions(allowed: Sequence[str] | None = None) -> list[str]:
    """Every IAM action a check that may take ``allowed`` needs, sorted and unique."""
    return [p.action for p in permissions_for(allowed)]


TAG_CONDITION = {"Null": {f"aws:ResourceTag/{T.STACK}": "false"}}


def policy_document(allowed: Sequence[str] | None = None, *, table_arn: str | None = None,
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
