"""Shared fixtures. Area-specific fixtures (moto server, sshd hosts, Pulumi mocks) live in
their own conftest modules under tests/."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def project_dir() -> Path:
    return PROJECT_DIR


# --- AWS: moto in server mode, reached through boto3's standard AWS_ENDPOINT_URL -------------

from motoserver import moto_server, point_boto3_at, reset  # noqa: E402


@pytest.fixture(scope="session")
def moto_server_url():
    """A real moto HTTP server on a free loopback port for the whole session."""
    yield from moto_server("127.0.0.1")


@pytest.fixture
def aws(moto_server_url, monkeypatch):
    """Point boto3 at the moto server with throwaway credentials; reset moto's state after."""
    point_boto3_at(moto_server_url, monkeypatch)
    yield moto_server_url
    reset(moto_server_url)
