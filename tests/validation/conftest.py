"""A throwaway dsinfra project (Pulumi.yaml + stacks/) the CLI reads through DSINFRA_PROJECT_DIR."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
VALID_STACK = """config:
  dsinfra:tier: dev
  dsinfra:budget:
    amountUsd: 100
"""


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "project"
    (folder / "stacks").mkdir(parents=True)
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", folder / "Pulumi.yaml")
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(folder))
    return folder


def write_stack(project: Path, name: str, content: str | bytes) -> Path:
    path = project / "stacks" / f"Pulumi.{name}.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path
