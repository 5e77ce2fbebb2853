"""Where dsinfra keeps its local state: the spend ledger, the audit log, locks, the price cache,
bootstrap runs, pinned host keys and generated API keys. One place, so a scheduled check, a
bootstrap and `dsinfra up` run from anywhere all see the same state."""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_ENV = "DSINFRA_STATE_DIR"


def safe_name(stack: str, prefix_chars: int = 40) -> str:
    """A file name for anything per stack: a readable prefix of the name (letters, digits,
    ``-``, ``_``, ``.`` only; no ``..``) plus a hash of the whole name. A stack name comes from a
    tag anyone in the account can set: 256 characters, ``../``, NUL or ``/`` must neither make
    a name too long nor a path outside the state directory, and two names never share a file."""
    import hashlib
    import re

    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", stack)[:prefix_chars].replace("..", "__")
    digest = hashlib.sha256(stack.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{readable.lstrip('.') or 'stack'}-{digest}"


def state_dir_path() -> Path:
    """Where the state directory is, without creating it (read-only views: ``plan``)."""
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dsinfra"


def state_dir() -> Path:
    """``$DSINFRA_STATE_DIR``, else ``$XDG_STATE_HOME/dsinfra``, else ``~/.local/state/dsinfra``."""
    path = state_dir_path()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        from dsinfra.errors import UserError

        raise UserError(f"invalid value for the state directory: {str(path)!r}; allowed: a "
                        f"folder dsinfra can create and write ({exc.strerror or exc})",
                        hint=f"Set {STATE_DIR_ENV} to a writable folder.") from None
    return path
