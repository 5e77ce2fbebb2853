"""The suite's own guard (tests/conftest.py): a test that aims at an address outside this
machine fails at once, instead of sending a packet there or waiting for a timeout."""

from __future__ import annotations

import socket
import urllib.request

import pytest


def test_an_address_outside_the_machine_is_refused_at_once():
    with pytest.raises(OSError, match="test guard: refused to connect to 203.0.113.10"):
        urllib.request.urlopen("http://203.0.113.10:8000/health", timeout=5)


def test_loopback_and_link_local_stay_allowed():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("169.254.1.1", 9))  # UDP connect sends nothing: only the guard decides
