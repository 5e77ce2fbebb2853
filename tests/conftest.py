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

import urllib.request  # noqa: E402

from motoserver import moto_server  # noqa: E402


@pytest.fixture(scope="session")
def moto_server_url():
    """A real moto HTTP server on a free loopback port for the whole session."""
    yield from moto_server("127.0.0.1")


@pytest.fixture
def aws(moto_server_url, monkeypatch):
    """Point boto3 at the moto server with throwaway credentials; reset moto's state after."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    from dsinfra.cloud.aws import reset_session

    reset_session()
    yield moto_server_url
    urllib.request.urlopen(urllib.request.Request(f"{moto_server_url}/moto-api/reset",
                                                  method="POST"), timeout=120)
    reset_session()
