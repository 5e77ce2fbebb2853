"""``dsinfra init [DIR]``: write a new project (ops/init.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py


@app.command("init")
def init_command(
    directory: Path = typer.Argument(Path("."), metavar="[DIR]",
                                     help="Folder for the project (created if missing; "
                                          "default the current one)."),
) -> None:
    """Write a dsinfra project: Pulumi.yaml, stacks/ with the dev, prod and distributed tiers
    (commented), program/ (runs dsinfra's Pulumi program) and a .gitignore for state and
    secrets. Never overwrites: an existing file is an error and nothing is written."""
    from dsinfra.ops.init import init_project

    written = init_project(directory)
    where = directory.resolve()
    typer.echo(f"dsinfra project in {where}:")
    for name in written:
        typer.echo(f"  {name}")
    typer.echo("next: edit stacks/Pulumi.dev.yaml (budget, owner), then `dsinfra plan dev`")
