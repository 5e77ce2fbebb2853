"""``dsinfra stop STACK`` and ``dsinfra start STACK``: pause a stack's instances (volumes and
data kept) and wake them (refused over budget without --force). Use cases in ops/resume.py."""

from __future__ import annotations

from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py

REGION_HELP = ("Region(s) to look in; default $DSINFRA_REGIONS, else every region enabled "
               "for the account.")


@app.command("stop")
def stop_command(
    stack: str = typer.Argument(..., help="The stack whose instances to stop."),
    region: Optional[list[str]] = typer.Option(None, "--region", metavar="<region>",
                                               help=REGION_HELP),
    terminate_spot: bool = typer.Option(
        False, "--terminate-spot", help="Terminate, after a notice, the instances AWS cannot "
        "stop (spot from a one-time request, see docs/budgets.md); without it such a stack "
        "is refused and nothing is done."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Stop the stack's running instances; volumes, data and addresses inside the VPC stay.
    The GPU hours stop; EBS storage is still billed. `dsinfra start` wakes it."""
    from dsinfra.ops.resume import stop_checked

    outcome = stop_checked(stack, region, terminate_spot=terminate_spot)
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(outcome)
        return
    from dsinfra.cli.output import note

    stopped, terminated = outcome["stopped"], outcome["terminated"]
    if stopped:
        note(f"{stack}: stopped {len(stopped)} instance(s): {', '.join(stopped)}; volumes "
             f"kept; `dsinfra start {stack}` wakes it")
    if terminated:
        note(f"{stack}: terminated {', '.join(terminated)} (AWS cannot stop it; notice "
             f"{outcome['notice']}); `dsinfra up {stack}` launches it again")
    if not stopped and not terminated:
        note(f"{stack}: no running instances found in {', '.join(outcome['regions'])}")


@app.command("start")
def start_command(
    stack: str = typer.Argument(..., help="The stack whose stopped instances to start."),
    region: Optional[list[str]] = typer.Option(None, "--region", metavar="<region>",
                                               help=REGION_HELP),
    force: bool = typer.Option(False, "--force", help="Start it even though it is over its "
                               "budget or its spend cannot be metered."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    now: Optional[str] = typer.Option(None, "--now", hidden=True,
                                      help="Judge the budget as of this UTC time (ISO 8601)."),
) -> None:
    """Start a stopped stack (after `dsinfra stop`, a budget stop or idle autostop)."""
    from dsinfra.cli.cost import parse_now
    from dsinfra.ops.resume import resume_checked

    outcome = resume_checked(stack, region, force=force, now=parse_now(now))
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(outcome)
        return
    from dsinfra.cli.output import note

    started = outcome["started"]
    note(f"{stack}: started {len(started)} instance(s): {', '.join(started)}" if started else
         f"{stack}: no stopped instances found in {', '.join(outcome['regions'])}")


# `resume` predates `stop`/`start`: the same command under its first name, kept for scripts.
app.command("resume", help="Same as `dsinfra start`: start the instances a `stop` (yours or a "
            "budget's) stopped; volumes and data were kept.")(start_command)
