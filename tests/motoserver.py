"""moto in server mode, for the tests (tests/conftest.py) and the sshd test hosts
(tests/bootstrap/conftest.py): the one place that starts and ends a moto server."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def die_with_parent() -> None:
    """A ``preexec_fn``: the child gets SIGKILL when the thread that started it ends
    (prctl(PR_SET_PDEATHSIG), Linux; a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 == PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


# moto's own server with its clock stopped at argv[1] (ISO 8601, UTC): every time moto stamps
# (an instance's LaunchTime, a volume's CreateTime) is that instant. moto reads the time through
# moto.core.utils.utcnow, which its services import from when they load (on their first request,
# after this patch).
def start(address: str = "127.0.0.1", *, frozen_at: str | None = None
          ) -> tuple[subprocess.Popen, str]:
    """A real moto HTTP server on a free port of ``address`` (loopback, or the sshd test
    hosts' link-local service address): (its process, its URL), once it answers. With
    ``frozen_at`` (ISO 8601, UTC) its clock stands still at that instant: resources made one
    after another carry the same timestamps, so what a test shows of them (uptime, spend) does
    not depend on how fast the machine made them."""
    port = _free_port(address)
    # The moto installed beside the interpreter running the tests, with the AWS contracts it
    # lacks patched in (tests/moto_contracts.py). A venv without the test extras
    # (tests/test_installed_wheel.py) names the checkout's moto_server; its python runs moto.
    named = os.environ.get("DSINFRA_TEST_MOTO_SERVER")
    python = os.path.join(os.path.dirname(named), "python") if named else sys.executable
    contracts = os.path.join(os.path.dirname(os.path.abspath(__file__)), "moto_contracts.py")
    argv = [python, contracts, *(["--frozen-at", frozen_at] if frozen_at is not None else [])]
    # It dies with the process that started it, even by SIGKILL (PR_SET_PDEATHSIG), so a
    # killed test run leaves no moto_server behind (issue 21).
    proc = subprocess.Popen([*argv, "-H", address, "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=die_with_parent)
    url = f"http://{address}:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    """End the server at once: its state is throwaway (every test resets it), so SIGKILL
    loses nothing, where SIGTERM waited on werkzeug's threads (a session's teardown once took
    10 s, the old wait's limit, on a CI worker)."""
    proc.kill()
    proc.wait(timeout=10)


def moto_server(address: str = "127.0.0.1", *, frozen_at: str | None = None):
    """``start``, yield the URL, ``stop``: the body of a pytest fixture."""
    proc, url = start(address, frozen_at=frozen_at)
    try:
        yield url
    finally:
        stop(proc)


def point_boto3_at(url: str, monkeypatch) -> None:  # noqa: ANN001 - pytest's MonkeyPatch
    """boto3 in this process talks to the moto server at ``url`` with throwaway credentials."""
    from dsinfra.cloud.aws import reset_session

    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    reset_session()


def reset(url: str) -> None:
    """Empty the moto server's state, and boto3's cached clients with it."""
    from dsinfra.cloud.aws import reset_session

    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"),
                           timeout=120)
    reset_session()


def no_aws_credentials(tmp_path, monkeypatch) -> None:  # noqa: ANN001 - pytest fixtures
    """No AWS at all: no credentials, config or instance metadata, so dsinfra works offline
    (and says so) as on a laptop without an AWS account."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("DSINFRA_REGIONS", raising=False)
