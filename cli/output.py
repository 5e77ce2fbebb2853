"""Terminal output shared by every command: JSON for scripts, rich for people, stderr for
messages so ``--json`` output on stdout stays parseable."""

from __future__ import annotations

import json
import math
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


def strict(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, Infinity) replaced by null: JSON has no
    such numbers, and a reader that gets ``NaN`` either crashes or believes it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def print_json(payload: Any) -> None:
    """Strict JSON (RFC 8259): never NaN or Infinity."""
    global json_printed
    encoded = json.loads(json.dumps(payload, default=_default))
    sys.stdout.write(json.dumps(strict(encoded), indent=2, allow_nan=False) + "\n")
    json_printed = True


# True once a command printed its JSON: an error after it (exit 3 with the report printed)
# must not add a second document to stdout.
json_printed = False


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def error(message: str) -> None:
    from dsinfra.cloud.notify import redact  # no heavy imports: stdlib only

    sys.stderr.write(f"error: {redact(message)}\n")


def note(message: str) -> None:
    sys.stderr.write(f"{message}\n")
