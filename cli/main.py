"""Root of the ``dsinfra`` command: command groups are composed here, errors mapped to exit
statuses here, and nothing else."""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from dsinfra import __version__
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
            typer.echo("interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None


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


def run() -> None:
    _exit_promptly_on_interrupt()
    try:
        _register()
        app()
    except KeyboardInterrupt:  # before or after click's own handling
        _interrupted_exit()


# A Ctrl-C raises KeyboardInterrupt in the main thread; the commands' handlers above turn it
# into "interrupted" and 130. Threads the SDKs leave behind (gRPC, the Pulumi mock monitor,
# boto3 transfers) can still hold the interpreter at exit, so a watchdog ends the process if
# it is not gone within INTERRUPT_GRACE_S. Files dsinfra writes are replaced atomically or
# appended line by line, so ending here leaves nothing half-written.
INTERRUPT_GRACE_S = 0.8


def _exit_promptly_on_interrupt() -> None:
    import signal

    def on_sigint(signum, frame):  # noqa: ANN001 - signal handler signature
        import threading

        watchdog = threading.Timer(INTERRUPT_GRACE_S, _interrupted_exit)
        watchdog.daemon = True
        watchdog.start()
        signal.signal(signal.SIGINT, lambda *_: _interrupted_exit())  # a second Ctrl-C: now
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread (an embedding caller): keep its handler
        pass


def _interrupted_exit() -> None:
    import os
    import sys

    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a closed pipe must not turn into a traceback
        pass
    try:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass
    os._exit(EXIT_INTERRUPTED)


_register()
