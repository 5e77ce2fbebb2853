"""The engine's API key and the Hugging Face token: where they come from, and keeping them out
of every log, error message and command line."""

from __future__ import annotations

import os
import secrets as _random
from dataclasses import dataclass
from pathlib import Path

API_KEY_ENV = "DSINFRA_API_KEY"
HF_TOKEN_ENVS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
REDACTED = "***"


@dataclass(frozen=True)
class Secrets:
    api_key: str
    hf_token: str | None = None

    def redact(self, text: str) -> str:
        for value in (self.api_key, self.hf_token):
            if value and len(value) >= 4:
                text = text.replace(value, REDACTED)
        return text


def resolve_secrets(state_dir: Path, name: str, *, stack_key: str | None = None) -> Secrets:
    """``stack_key`` when the caller gives one, else ``$DSINFRA_API_KEY``, else a key generated
    for this stack (kept 0600 under the state dir); ``$HF_TOKEN`` when set (gated models)."""
    api_key = stack_key or os.environ.get(API_KEY_ENV) or \
        _stored_api_key(api_key_path(state_dir, name))
    hf_token = next((os.environ[v] for v in HF_TOKEN_ENVS if os.environ.get(v)), None)
    return Secrets(api_key=api_key, hf_token=hf_token)


def api_key_path(state_dir: Path, name: str) -> Path:
    """Where a generated key for stack ``name`` is kept (0600)."""
    return state_dir / "secrets" / f"{name}.api-key"


def _stored_api_key(path: Path) -> str:
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = "dsk-" + _random.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
