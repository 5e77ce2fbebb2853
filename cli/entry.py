"""The ``dsinfra`` console script: Ctrl-C handling goes in before typer or any command loads."""

from __future__ import annotations


def run() -> None:
    from dsinfra.cli import interrupts

    interrupts.install()

    def main() -> None:
        from dsinfra.cli.main import run as run_app

        run_app()

    interrupts.run_guarded(main)
