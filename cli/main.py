"""Root of the ``dsinfra`` command: command groups are composed here, errors mapped to exit
statuses here, and nothing else."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from dsinfra import __version__
from dsinfra.cli import interrupts
from dsinfra.errors import EXIT_INTERRUPTED, DsinfraError

# Help rendering through rich costs ~0.25 s of imports; plain help keeps `--help` fast.
TYPER_OPTIONS = dict(rich_markup_mode=None, pretty_exceptions_enable=False,
                     no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})


class DsinfraGroup(TyperGroup):
    """Turns expected failures into one line on stderr and their exit status (no traceback)."""

    def invoke(self, ctx):  # noqa: ANN001 - click's signature
        try:
            return super().invoke(ctx)
        except DsinfraError as exc:
            from dsinfra.cli.output import error

            error(exc.message)
            if exc.hint:
                typer.echo(exc.hint, err=True)
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
) -> None:
    """dsinfra: DeepSeek inference on AWS, budget-guarded."""


def _register() -> None:
    # Each module defines its commands on `app` or a sub-Typer; importing them must stay cheap.
    from dsinfra.cli import commands  # noqa: F401
    from dsinfra.cli.usage import install_one_line_usage_errors

    install_one_line_usage_errors()


def run() -> None:
    from dsinfra.cli import interrupts

    interrupts.install()

    def main() -> None:
        _register()
        app()

    interrupts.run_guarded(main)


_register()
