"""Shared fixtures. Area-specific fixtures (moto server, sshd hosts, Pulumi mocks) live in
their own conftest modules under tests/."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def project_dir() -> Path:
    return PROJECT_DIR
