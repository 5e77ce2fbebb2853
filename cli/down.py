"""``dsinfra down STACK``: back to zero spend, and proof of it."""

from __future__ import annotations

from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py


@app.command("down")
def down_command(
    stack: str = typer.Argument(..., help="The stack to destroy."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask to type the stack name."),
    force: bool = typer.Option(False, "--force", help="Destroy even a protected stack."),
    region: Optional[list[str]] = typer.Option(None, "--region", metavar="<region>",
                                               help="Region(s) to sweep; "
                                               "default $DSINFRA_REGIONS, else every region "
                                               "enabled for the account."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """pulumi destroy (where the backend answers), then sweep and verify by the stack tag."""
    from dsinfra.cli.confirm import require_terminal, typed_confirmation
    from dsinfra.cli.output import console
    from dsinfra.ops.down import destroy_stack

    if not yes:
        require_terminal(f"dsinfra down {stack}")
    spinner = (lambda message: console(stderr=True).status(message)) if not as_json else None
    result = destroy_stack(stack, region, yes=yes, force=force, preview=_preview(as_json),
                           **({"working": spinner} if spinner else {}),
                           confirm=lambda: typed_confirmation(
                               f"Type the stack name ({stack}) to destroy it and its data",
                               command=f"dsinfra down {stack}"))
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(result.as_dict())
    else:
        from dsinfra.cli.output import note

        note(f"{stack}: pulumi {result.pulumi}; deleted {len(result.deleted)} resource(s); "
             f"{result.summary}; regions checked: {', '.join(result.regions_checked)}")
    if not result.clean:
        from dsinfra.errors import CloudError

        raise CloudError(result.summary, hint=f"Run `dsinfra down {stack}` again; "
                         "`dsinfra cost audit` shows what was done.")


def _preview(as_json: bool):
    """What will be destroyed, shown before the confirmation (on stderr, so --json stays
    parseable)."""
    def show(asked: tuple[str, ...], found: list) -> None:
        from dsinfra.cli.output import note

        note(f"regions checked: {', '.join(asked)}")
        if not found:
            note("nothing billable carries this stack's tag")
        for r in found:
            note(f"  will destroy {r.kind} {r.id} ({r.region}, {r.state})")

    return show
