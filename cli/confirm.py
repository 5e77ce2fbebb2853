"""Confirmations: asked on a terminal, refused (exit 2, naming ``--yes``) without one.

Without this, ``typer.prompt`` reads end-of-file from a closed or piped stdin and click ends
with "Aborted!" and exit 1, the status reserved for bugs."""

from __future__ import annotations

import sys


def require_terminal(command: str, *, flag: str = "--yes",
                     nothing_done: str = "nothing was destroyed") -> None:
    """Refuse before any work (or AWS call) when a confirmation could not be asked; ``flag``
    is what confirms without a terminal (``capacity buy``: ``--price USD``)."""
    from dsinfra.errors import UserError

    if not stdin_is_terminal():
        raise UserError(f"`{command}` needs a typed confirmation and stdin is not a terminal; "
                        f"{nothing_done}", hint=f"Pass {flag} to confirm without a terminal.")


def stdin_is_terminal() -> bool:
    """Whether a prompt can be answered (tests that type an answer replace this)."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # stdin closed
        return False


def typed_confirmation(prompt: str, *, command: str, flag: str = "--yes",
                       nothing_done: str = "nothing was destroyed") -> str:
    """What the user typed at ``prompt``; a ``UserError`` when there is no terminal to ask."""
    import typer

    require_terminal(command, flag=flag, nothing_done=nothing_done)
    return typer.prompt(prompt, default="", show_default=False)
