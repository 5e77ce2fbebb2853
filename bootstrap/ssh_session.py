"""One SSH session to one node for day two (``exec``, ``logs -f``, ``ssh``, ``port-forward``
and ``up``'s health check through the endpoint): the connection bootstrap opens
(``remote.open_connection``: the endpoint's tunnel or a gateway, the session's one-time key,
pinned host keys), without a run log, and the channel work on it. ops/ drives these methods
and never touches paramiko itself.
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable
from typing import Any, BinaryIO

from dsinfra.bootstrap.hostkeys import KnownHosts
from dsinfra.bootstrap.hosts import HostSpec
from dsinfra.bootstrap.remote import (HostConnection, HostLog, Output, SshSettings,
                                      close_quietly, open_connection, open_forward)
from dsinfra.bootstrap.secrets import Secrets


class SshSession:
    """Opened on first use (``open``), and again by a caller that finds it not ``alive``."""

    def __init__(self, host: HostSpec, known_hosts: KnownHosts,
                 connect_timeout_s: float = 15.0) -> None:
        self.host, self.known, self.connect_timeout_s = host, known_hosts, connect_timeout_s
        self.conn: HostConnection | None = None

    def open(self) -> "SshSession":
        """Connect; raises on refusal or drop (as bootstrap's connection does)."""
        self.close()
        secrets = Secrets(api_key="")  # nothing secret is sent; nothing is logged to disk
        self.conn = open_connection(self.host, self.known, HostLog(None, secrets), secrets,
                                    SshSettings(connect_timeout_s=self.connect_timeout_s))
        return self

    def _connected(self) -> HostConnection:
        if self.conn is None:
            self.open()
        assert self.conn is not None
        return self.conn

    @property
    def alive(self) -> bool:
        conn = self.conn
        return conn is not None and conn.is_connected and conn.transport.is_active()

    def run(self, command: str, *, root: bool = False, timeout_s: float | None = None
            ) -> Output:
        """``command``'s exit status and output (non-zero is a result, not an error); raises
        ``remote.CommandFailed`` when it did not finish within ``timeout_s``."""
        return self._connected().sh(command, root=root, warn=True, timeout=timeout_s)

    def stream(self, command: str, emit: Callable[[str], None]) -> None:
        """Run ``command`` as root and hand each line of its output to ``emit`` until it ends
        (``journalctl -f``: until interrupted)."""
        channel = self._connected().transport.open_session()
        channel.exec_command(f"sudo -n {command}")
        for line in channel.makefile("r"):
            emit(line.rstrip("\n"))

    def forward(self, address: str, port: int, timeout_s: float = 15.0) -> Any:
        """A ``direct-tcpip`` channel to ``address:port`` as the node sees it (socket-like:
        ``sendall``, ``recv``, ``settimeout``, ``shutdown``, ``close``)."""
        return open_forward(self._connected(), address, port, timeout_s)

    def shell(self, stdin: BinaryIO, stdout: BinaryIO) -> int:
        """A login shell: a terminal in raw mode when ``stdin`` is one, else the shell reads
        its commands from ``stdin``. Returns the shell's exit status."""
        channel = self._connected().transport.open_session()
        tty = os.isatty(stdin.fileno())
        restore = _raw_terminal(stdin, channel) if tty else None
        try:
            channel.invoke_shell()
            source_open = True
            while not channel.exit_status_ready() or channel.recv_ready():
                ready, _, _ = select.select([channel] + ([stdin] if source_open else []), [],
                                            [], 0.5)
                if channel in ready:
                    data = channel.recv(32768)
                    if not data:
                        break
                    stdout.write(data)
                    stdout.flush()
                if stdin in ready:
                    data = os.read(stdin.fileno(), 4096)
                    if data:
                        channel.sendall(data)
                    else:
                        source_open = False
                        channel.shutdown_write()
            return channel.recv_exit_status()
        finally:
            if restore:
                restore()

    def close(self) -> None:
        close_quietly(self.conn)
        self.conn = None


def _raw_terminal(stdin, channel):
    """Ask for a pty of the terminal's size and put the local terminal in raw mode; returns
    what restores it."""
    import shutil
    import termios
    import tty

    size = shutil.get_terminal_size()
    channel.get_pty(term=os.environ.get("TERM", "xterm"), width=size.columns,
                    height=size.lines)
    saved = termios.tcgetattr(stdin.fileno())
    tty.setraw(stdin.fileno())
    return lambda: termios.tcsetattr(stdin.fileno(), termios.TCSADRAIN, saved)
