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

import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server_url():
    """A real moto HTTP server on a free loopback port for the whole session."""
    port = _free_loopback_port()
    # The moto installed beside the interpreter running the tests, not whichever is on PATH.
    exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
    if not os.path.exists(exe):
        exe = shutil.which("moto_server") or exe
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto_server did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        # moto's SIGTERM handler exits through interpreter shutdown, which can take longer
        # than 10 s on a loaded 2-core machine after a long session; the server is not
        # under test, so end it.
        proc.kill()
        proc.wait(timeout=10)


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
                                                  method="POST"), timeout=10)
    reset_session()
