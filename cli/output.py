"""Terminal output shared by every command: JSON for scripts, rich for people, stderr for
messages so ``--json`` output on stdout stays parseable."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True)
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=_default) + "\n")


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")


def note(message: str) -> None:
    sys.stderr.write(f"{message}\n")
