"""Where dsinfra keeps its local state: the spend ledger, the audit log, locks, the price cache,
bootstrap runs, pinned host keys and generated API keys. One place, so a scheduled check, a
bootstrap and `dsinfra up` run from anywhere all see the same state."""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_ENV = "DSINFRA_STATE_DIR"


def state_dir() -> Path:
    """``$DSINFRA_STATE_DIR``, else ``$XDG_STATE_HOME/dsinfra``, else ``~/.local/state/dsinfra``."""
    if os.environ.get(STATE_DIR_ENV):
        path = Path(os.environ[STATE_DIR_ENV]).expanduser()
    else:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        path = Path(base) / "dsinfra"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
