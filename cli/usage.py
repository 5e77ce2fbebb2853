"""Usage errors (an unknown flag, a value typer cannot parse) as the one line every other bad
input gets: ``error: <what is wrong>; see `dsinfra CMD --help```, exit 2.

click prints the usage synopsis, a hint and the error on four lines; its UsageError offers no
hook other than ``show``, so that method is replaced for this process (the dsinfra command).
Recent typer releases carry their own copy of click (``typer._click``): both are patched."""

from __future__ import annotations

import importlib


def install_one_line_usage_errors() -> None:
    import typer

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        path = self.ctx.command_path if self.ctx is not None else "dsinfra"
        message = " ".join(self.format_message().split()).rstrip(".")  # click wraps some
        typer.echo(f"error: {message}; see `{path} --help`", file=file, err=file is None)

    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            importlib.import_module(module).UsageError.show = show
        except (ImportError, AttributeError):
            continue
