"""Shared fixtures. Area-specific fixtures (moto server, sshd hosts, Pulumi mocks) live in
their own conftest modules under tests/."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def project_dir() -> Path:
    return PROJECT_DIR


# --- No test sends a packet off this machine -------------------------------------------------

import ipaddress  # noqa: E402
import socket  # noqa: E402

# Loopback, and the link-local range the sshd test hosts and their service address live in.
ALLOWED_NETS = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "169.254.0.0/16")]


def _guarded(connect):
    def guarded_connect(self, address):  # noqa: ANN001 - socket.socket's own signature
        if self.family in (socket.AF_INET, socket.AF_INET6):
            ip = ipaddress.ip_address(address[0].split("%")[0])
            if not any(ip in net for net in ALLOWED_NETS):
                # A test aimed at an address outside this machine (moto hands out public IPs
                # from real ranges): fail at once instead of waiting for a timeout.
                raise OSError(f"test guard: refused to connect to {address[0]} (only loopback "
                              "and 169.254.0.0/16 are test addresses)")
        return connect(self, address)
    return guarded_connect


@pytest.fixture(autouse=True, scope="session")
def _no_traffic_off_this_machine():
    saved = socket.socket.connect, socket.socket.connect_ex
    socket.socket.connect, socket.socket.connect_ex = _guarded(saved[0]), _guarded(saved[1])
    yield
    socket.socket.connect, socket.socket.connect_ex = saved


# --- Ctrl-C as a foreground terminal delivers it ----------------------------------------------

import signal  # noqa: E402


@pytest.fixture
def foreground_sigint():
    """SIGINT raises KeyboardInterrupt in this process for the test, as in a foreground
    terminal: a suite started as a background job of a non-interactive shell (`cmd &`, POSIX
    job control off) runs with SIGINT ignored, and a test's Ctrl-C would be dropped."""
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, saved)


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
