"""The ``dsinfra`` console script: the process's exit and Ctrl-C handling go in before typer or
any command loads."""

from __future__ import annotations


def run() -> None:
    from dsinfra.cli import process

    process.install()  # first: its atexit handler must be the first registered (cli/process.py)
    from dsinfra.cli import interrupts

    interrupts.install()

    def main() -> None:
        from dsinfra.cli.main import run as run_app

        run_app()

    process.run(lambda: interrupts.run_guarded(main))
