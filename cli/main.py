"""Root of the ``dsinfra`` command: command groups are composed here, errors mapped to exit
statuses here, and nothing else.

Each ``cli/<command>.py`` defines its own ``app`` (typer's one-file-per-command layout) and never
imports this module; ``compose`` adds them all to the root, in the order ``--help`` lists them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from dsinfra import __version__
from dsinfra.cli import (advise, bootstrap, cache_cmd, capacity, catalog_cmd, cost, day2, deploy,
                         doctor, down, guard, host, iam, image_cmd, init_cmd, interrupts, offers,
                         plan, power, schedule, size, stacks, status, top, up)
from dsinfra.cli.options import TYPER_OPTIONS
from dsinfra.errors import EXIT_INTERRUPTED, DsinfraError

# Command modules import only typer and the standard library at the top, so composing them all
# keeps `dsinfra --help` free of the cloud SDKs.
COMMAND_MODULES = (init_cmd, plan, stacks, size, offers, advise, doctor, up, bootstrap, deploy,
                   day2, power, host, cost, down, status, top, catalog_cmd, capacity, guard, iam,
                   schedule, cache_cmd, image_cmd)


class DsinfraGroup(TyperGroup):
    """Turns expected failures into one line on stderr and their exit status (no traceback)."""

    def invoke(self, ctx):  # noqa: ANN001 - click's signature
        wants_json = _wants_json(ctx)  # before click hands the arguments to the subcommand
        from dsinfra.cli import output

        output.json_printed = False
        try:
            return super().invoke(ctx)
        except DsinfraError as exc:
            from dsinfra.cli.output import error

            error(exc.message)
            if exc.hint:
                typer.echo(exc.hint, err=True)
            from dsinfra.cli import output

            if wants_json and not output.json_printed:
                _print_json_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            interrupts.report()
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception:
            # Ctrl-C inside an import or an SDK can surface as another exception (a module
            # left half-initialised): after an interrupt, it is still the interrupt.
            if interrupts.received:
                interrupts.report()
                raise typer.Exit(EXIT_INTERRUPTED) from None
            raise


def _wants_json(ctx) -> bool:  # noqa: ANN001 - click's Context
    """``--json`` among the command's own arguments (not after ``--``, which `exec` passes on)."""
    args = [*(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])),
            *ctx.args]
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def _print_json_error(exc: DsinfraError) -> None:
    """With --json, the error is JSON on stdout too: scripts parse one stream."""
    import json

    from dsinfra.cloud.notify import redact

    body = {"error": redact(exc.message), "exit_status": exc.exit_code}
    if exc.hint:
        body["hint"] = exc.hint
    typer.echo(json.dumps(body))


app = typer.Typer(
    cls=DsinfraGroup,
    help="Serve DeepSeek on your own AWS account: plan, bring up, bootstrap, guard the budget, "
         "tear down.",
    **TYPER_OPTIONS,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dsinfra {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    project: Optional[Path] = typer.Option(
        None, "--project", metavar="DIR", help="The project folder (Pulumi.yaml and stacks/). "
        "Default: $DSINFRA_PROJECT_DIR, else the nearest from here upwards."),
) -> None:
    """dsinfra: DeepSeek inference on AWS, budget-guarded."""
    if project is not None:
        import os

        from dsinfra.stackfiles import PROJECT_ENV

        # One resolver (dsinfra/stackfiles.py) reads it, and child processes inherit it.
        os.environ[PROJECT_ENV] = str(project.expanduser().resolve())


def compose(root: typer.Typer) -> typer.Typer:
    from dsinfra.cli.usage import install_one_line_usage_errors

    for module in COMMAND_MODULES:
        root.add_typer(module.app)  # unnamed: its commands and groups join the root
    install_one_line_usage_errors()
    return root


compose(app)


def run() -> None:
    # The console script (cli/entry.py) installs this before typer loads; installing it again
    # here keeps `python -m`-style and embedded callers at exit 130 too.
    interrupts.install()
    interrupts.run_guarded(app)
