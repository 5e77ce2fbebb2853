"""``dsinfra guard deploy|destroy|permissions``: the in-account budget guard."""

from __future__ import annotations

import os
from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py

guard_app = typer.Typer(help="The in-account budget guard (EventBridge Scheduler -> Lambda).",
                        **TYPER_OPTIONS)
app.add_typer(guard_app, name="guard")


def make_engine():
    """The guard's Pulumi engine (tests substitute this)."""
    from dsinfra.ops.guard_deploy import guard_engine

    return guard_engine(os.environ.get("DSINFRA_WEBHOOK_URL"))


@guard_app.command("deploy")
def deploy_command(
    region: Optional[list[str]] = typer.Option(None, "--region", metavar="<region>",
                                               help="Region(s) the guard "
                                               "checks; the first hosts it."),
    every: str = typer.Option("15m", "--every", help="Time between checks: 1m to 24h, e.g. "
                              "15m or 1h."),
    enforce: bool = typer.Option(False, "--enforce", help="Let the guard act; without it, it "
                                 "meters, decides and audits only."),
    stack: str = typer.Option("guard", "--stack", help="The guard's Pulumi stack name."),
    as_json: bool = typer.Option(False, "--json", help="Print the stack outputs as JSON."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Build the Lambda package and show "
                                 "what would be created and its size; touch no AWS."),
) -> None:
    """Deploy or update the guard (its webhook comes from $DSINFRA_WEBHOOK_URL, as a secret)."""
    from dsinfra.ops.local import resolve_regions
    from dsinfra.ops.guard_deploy import deploy_guard
    from dsinfra.schedule import every_minutes

    every = every_minutes(every)
    regions = resolve_regions(region)
    if dry_run:
        _print_dry_run(regions, every, enforce, as_json)
        return
    outputs = deploy_guard(make_engine(), stack, regions, every, enforce)
    _record(stack, outputs, regions, every, enforce)
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(outputs)
        return
    from dsinfra.cli.output import note

    note(f"guard {stack}: checks {', '.join(regions)} every {every} min "
         f"({'enforcing' if enforce else 'dry run'}); function {outputs.get('function_name')}")


def _record(stack: str, outputs, regions, every: int, enforce: bool) -> None:
    """Audit the deploy with where the guard keeps its heartbeat: ``plan``, ``up`` and
    ``status`` read it back to say when the guard last ran (ops/enforcer.py)."""
    from dsinfra.ops.enforcer import guard_deployed, utcnow
    from dsinfra.ops.local import audit_log

    guard = guard_deployed(outputs, regions, every, utcnow(), stack, enforce=enforce)
    audit_log().append("guard.deploy", stack=stack, guard=guard.to_dict())


def _print_dry_run(regions, every: int, enforce: bool, as_json: bool) -> None:
    from dsinfra.ops.guard_deploy import guard_dry_run

    plan = guard_dry_run(regions, every, enforce,
                         webhook=bool(os.environ.get("DSINFRA_WEBHOOK_URL")))
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(plan)
        return
    package = plan["package"]
    typer.echo("guard deploy --dry-run: nothing created, no AWS call.")
    typer.echo(f"checks:  {', '.join(regions)} every {every} min "
               f"({'enforcing' if enforce else 'dry run'})")
    typer.echo(f"package: {len(package['files'])} files, {package['bytes'] / 1024:.1f} KiB "
               f"zipped, sha256 {package['sha256'][:16]}")
    typer.echo(f"handler: {plan['handler']}")
    typer.echo("Would create:")
    for resource in plan["resources"]:
        typer.echo(f"  {resource['type']}  {resource['name']}")


@guard_app.command("destroy")
def destroy_command(stack: str = typer.Option("guard", "--stack"),
                    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")) -> None:
    """Remove the guard (its ledger table and audit records go with it)."""
    from dsinfra.cli.confirm import typed_confirmation
    from dsinfra.errors import UserError

    if not yes and typed_confirmation(f"Type the guard stack name ({stack}) to remove it",
                                      command="dsinfra guard destroy").strip() != stack:
        raise UserError(f"confirmation did not match {stack!r}; nothing was removed")
    make_engine().destroy(stack)
    from dsinfra.ops.local import audit_log

    audit_log().append("guard.destroy", stack=stack)


@guard_app.command("permissions")
def permissions_command(
    as_json: bool = typer.Option(False, "--json", help="Print the IAM policy document."),
    table_arn: Optional[str] = typer.Option(None, "--table-arn", help="The guard's DynamoDB "
                                            "table (adds its statement)."),
    sns_topic_arn: Optional[str] = typer.Option(None, "--sns-topic-arn",
                                                help="Grant sns:Publish on this topic."),
) -> None:
    """The IAM policy a role needs to run every dsinfra cost command: the check and its budget
    actions (destructive ones only on dsinfra:stack-tagged resources), resume (start), Cost
    Explorer (`cost report --reconcile-billing`) and Pricing (`catalog refresh`)."""
    from dsinfra import budget_actions
    from dsinfra.cloud.actions import policy_document
    from dsinfra.cloud.billing import PERMISSIONS as BILLING
    from dsinfra.cloud.catalog_cache import PERMISSIONS as PRICING

    document = policy_document(budget_actions.names(), table_arn=table_arn,
                               sns_topic_arn=sns_topic_arn, extra_reads=(*BILLING, *PRICING))
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(document)
        return
    for statement in document["Statement"]:
        where = " (only on resources tagged dsinfra:stack)" if "Condition" in statement else ""
        typer.echo(f"# {statement['Sid']}: {statement['Resource']}{where}")
        typer.echo("\n".join(statement["Action"]))
