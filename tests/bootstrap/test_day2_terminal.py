"""`dsinfra ssh` and `dsinfra logs --follow` as a person runs them: a real process on a real
pseudo-terminal (its controlling terminal, so Ctrl-C is the terminal's), through the local EC2
Instance Connect Endpoint (eice_server.py) to an sshd test host.

The process is `dsinfra` itself, started through a launcher that replaces only the lookup of the
stack's outputs (Pulumi state, which the test has not got) with the test host's address, host
key and the local endpoint; everything after it is the shipped command."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import subprocess
import sys
import termios
import time

import pytest
from eice_server import EICE_ENDPOINT_ID, EICE_SECRET
from hostlab import USER

ENDPOINT_ID, SECRET = EICE_ENDPOINT_ID, EICE_SECRET  # the `endpoint` fixture's

LAUNCHER = """
import json, sys
from functools import partial

from botocore.credentials import Credentials

from dsinfra.bootstrap.hostkeys import KnownHosts, pins_from_text
from dsinfra.cli import main
from dsinfra.cloud.eice import presigned_tunnel_url
from dsinfra.ops import remote
from dsinfra.outputs import NodeOutput, StackOutputs

spec = json.load(open(sys.argv.pop(1)))
outputs = StackOutputs(
    nodes=[NodeOutput(id="i-0000000000000001", role="head", private_ip=spec["ip"],
                      public_ip=None, instance_type="g5.2xlarge", efa_interfaces=0)],
    bastion=None, endpoint="", ssh_user=spec["user"], region="us-east-1",
    connect_endpoint_id=spec["endpoint_id"], connect_endpoint_dns=spec["dns_name"])
known = KnownHosts(record_path=spec["known_hosts"], trust_on_first_use=False)
known.pins[spec["ip"] + ":22"] = pins_from_text(spec["host_key"])
url = partial(presigned_tunnel_url, region="us-east-1", endpoint_id=spec["endpoint_id"],
              dns_name=spec["dns_name"], credentials=Credentials("AKIDEXAMPLE", spec["secret"]),
              scheme="ws")
access = remote.Access(outputs, spec["client_key"],
                       lambda ip, port: url(private_ip=ip, port=port), known, 5.0)
remote.access_for_stack = lambda stack, **kw: access
main.run()
"""


@pytest.fixture
def launch(lab, endpoint, tmp_path):
    """Start ``dsinfra ARGS`` on a new pseudo-terminal of 80x24; returns (process, terminal)."""
    host = lab.fresh("single", "g5.2xlarge")
    spec = tmp_path / "access.json"
    spec.write_text(json.dumps({
        "ip": host.listen, "user": USER, "host_key": host.host_key_line(),
        "client_key": str(lab.client_key), "known_hosts": str(tmp_path / "known_hosts"),
        "endpoint_id": ENDPOINT_ID, "dns_name": endpoint.dns_name, "secret": SECRET}))
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    started = []

    def start(*args: str):
        terminal, child = os.openpty()
        fcntl.ioctl(child, termios.TIOCSWINSZ, b"\x18\x00\x50\x00" + b"\x00" * 4)  # 24x80

        def controlling_terminal() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            # SIGINT at its default, as a shell starts a foreground command: a suite started
            # as a background job of a non-interactive shell (`cmd &`) ignores SIGINT, the
            # child would inherit that, and dsinfra keeps an ignored SIGINT ignored.
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        process = subprocess.Popen([sys.executable, str(launcher), str(spec), *args],
                                   stdin=child, stdout=child, stderr=child,
                                   preexec_fn=controlling_terminal,
                                   env={**os.environ, "TERM": "xterm"})
        os.close(child)
        started.append((process, terminal))
        return process, terminal, host

    yield start
    for process, terminal in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        os.close(terminal)


def read_until(terminal: int, needle: bytes, seen: bytearray, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while needle not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} never appeared; the terminal showed:\n"
                                 f"{bytes(seen).decode(errors='replace')}")
        ready, _, _ = select.select([terminal], [], [], 0.2)
        if ready:
            try:
                seen += os.read(terminal, 4096)
            except OSError:  # EIO: the process closed the terminal
                raise AssertionError(f"the process ended before {needle!r}:\n"
                                     f"{bytes(seen).decode(errors='replace')}") from None


def test_ssh_is_an_interactive_shell_on_a_real_terminal(launch):
    process, terminal, _ = launch("ssh", "dev")
    seen = bytearray()
    read_until(terminal, b"$ ", seen)  # the remote shell's prompt: the terminal is raw
    os.write(terminal, b"echo $((6*7))\r")  # Enter on a raw terminal is a carriage return
    read_until(terminal, b"42\r\n", seen)
    # The answer on a line of its own (the typed line's echo shows $((6*7)), never 42); bash
    # may switch bracketed paste off first (ESC[?2004l), then returns to the line's start.
    assert re.search(rb"[\r\n]42\r\n", seen), bytes(seen).decode(errors="replace")
    os.write(terminal, b"exit\r")
    assert process.wait(timeout=30) == 0, bytes(seen).decode(errors="replace")


def test_logs_follow_prints_appended_lines_and_ctrl_c_exits_130(launch):
    process, terminal, host = launch("logs", "dev", "--follow")
    log = host.state_dir / "engine.log"
    log.write_text("INFO:     Started server process [1]\n")
    seen = bytearray()
    read_until(terminal, b"Started server process", seen)
    with log.open("a") as handle:
        handle.write("INFO:     127.0.0.1:50312 - \"POST /v1/chat/completions HTTP/1.1\" 200 OK\n")
    read_until(terminal, b"POST /v1/chat/completions", seen)
    os.write(terminal, b"\x03")  # Ctrl-C, as the terminal delivers it: SIGINT to the group
    assert process.wait(timeout=10) == 130
    read_until(terminal, b"interrupted", seen, timeout_s=5)
    assert b"Traceback" not in seen
