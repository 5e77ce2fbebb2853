"""``dsinfra deploy STACK``: replace the stack's replicas one at a time, gated on health, with
new engine settings; roll back a replica that does not become healthy. Use case in
ops/deploy.py."""

from __future__ import annotations

from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py


def _line(event: dict) -> str | None:
    """One progress line per replica step (None: not shown)."""
    where = f"replica {event['replica']}/{event['of']}" if event.get("replica") else \
        "extra replica"  # an interrupted run's surge, drained before the deploy goes on
    kind = event.get("event")
    if kind == "template":
        return (f"launch template version {event['to_version']} (was "
                f"{event['from_version']}); replacing one replica at a time")
    if kind == "resume":
        return f"resuming the interrupted deploy: {len(event['replace'])} replica(s) to replace"
    if kind == "cleanup":
        return (f"cleaning up the interrupted deploy (other settings): "
                f"{len(event['replace'])} replica(s) to replace")
    if kind == "launch":
        return f"{where}: launched {event['instance']} (desired {event['desired']})"
    if kind == "adopt":
        return f"{where}: adopting {event['instance']} from the interrupted run"
    if kind == "target":
        return f"{where}: {event['instance']} target {event['state']}"
    if kind == "healthy":
        return f"{where}: {event['instance']} healthy after {event['after_s']:g} s"
    if kind == "retire":
        return (f"{where}: terminating {event['instance']} (AWS drains it first, up to "
                f"{event['drain_s']} s)")
    if kind == "rollback":
        return (f"{where}: ROLLBACK: {event['reason']}; terminated {event['instance']}; "
                f"the group launches the settings of template version "
                f"{event['previous_version']} again (version {event['restored_version']})")
    if kind == "done":
        return f"done: {event['replaced']} replica(s) on template version {event['to_version']}"
    return None


@app.command("deploy")
def deploy_command(
    stack: str = typer.Argument(..., help="The stack whose replicas to replace."),
    model: Optional[str] = typer.Option(None, "--model", metavar="ID",
                                        help="Serve this Hugging Face model (org/name)."),
    image: Optional[str] = typer.Option(None, "--image", metavar="REF",
                                        help="Run this engine image (a pinned tag or digest; "
                                        "in ECR form it must be in the account's ECR)."),
    engine_arg: Optional[list[str]] = typer.Option(
        None, "--engine-arg", metavar="ARG", help="An engine argument (repeat for each); "
        "replaces the stack's engine.extraArgs."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary."),
    health_timeout_s: Optional[float] = typer.Option(
        None, "--health-timeout-s", hidden=True, help="Override the tier's health timeout."),
    poll_s: Optional[float] = typer.Option(None, "--poll-s", hidden=True),
) -> None:
    """Replace the stack's replicas one at a time: a new one with the new settings must be
    healthy behind the load balancer before an old one is drained and removed; one that does
    not become healthy is terminated and the previous settings restored (exit 3)."""
    from dsinfra.ops.deploy import DeployTimings, RolledBack, deploy

    from dsinfra.cli.output import console

    shown = None if as_json else console()

    def progress(event: dict) -> None:
        line = _line(event)
        if shown is not None and line:
            shown.print(f"{stack}: {line}", markup=False)

    timings = DeployTimings(health_timeout_s=health_timeout_s,
                            **({"poll_s": poll_s} if poll_s else {}))
    try:
        summary = deploy(stack, model=model, image=image, engine_args=engine_arg,
                         timings=timings, progress=progress)
    except RolledBack as exc:
        if as_json:
            from dsinfra.cli.output import print_json

            print_json(exc.summary)
        raise
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(summary)
