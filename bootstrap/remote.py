"""The SSH edge: one fabric ``Connection`` per host, pinned host keys, a log per host with
secrets redacted, and the errors a step can end in."""

from __future__ import annotations

import hashlib
import io
import logging
import re
import select
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from secrets import token_hex

import paramiko
from fabric import Config, Connection
from invoke.exceptions import UnexpectedExit
from paramiko.ssh_exception import NoValidConnectionsError

from dsinfra.bootstrap.hostkeys import KnownHosts
from dsinfra.bootstrap.hosts import Gateway, HostSpec
from dsinfra.bootstrap.tunnel import TunnelGateway
from dsinfra.bootstrap.secrets import Secrets

# paramiko reports a connection reset (every reboot makes one) on stderr through logging's
# last-resort handler, through the live display; dsinfra logs drops itself, per host.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

TAIL_LINES = 15
# An SSH drop (sshd restarted, host rebooting, network blip) rather than a refusal.
SSH_DROPS = (paramiko.SSHException, NoValidConnectionsError, socket.timeout, socket.error,
             EOFError, ConnectionError)


class CommandFailed(Exception):
    """A remote command exited non-zero (or timed out)."""

    def __init__(self, command: str, exit_code: int | None, output_tail: str) -> None:
        super().__init__(f"`{command}` exited {exit_code}")
        self.command, self.exit_code, self.output_tail = command, exit_code, output_tail


class StepCheckFailed(Exception):
    """An apply finished but its check still says the step is not done: names what is wrong."""


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class HostLog:
    """``<run dir>/<host>.log``: every command, its exit status and output, secrets redacted."""

    def __init__(self, path: Path | None, secrets: Secrets) -> None:
        self.path, self.secrets = path, secrets
        self._lock = threading.Lock()
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, text: str) -> None:
        if not self.path:
            return
        stamp = time.strftime("%H:%M:%S")
        clean = self.secrets.redact(text)
        with self._lock, self.path.open("a") as handle:
            for line in clean.rstrip("\n").splitlines() or [""]:
                handle.write(f"{stamp} {line}\n")


class HostConnection(Connection):
    """A fabric Connection that logs what it runs and knows how to become root."""

    log: HostLog
    secrets: Secrets
    key_push = None  # public key line -> None: EC2 Instance Connect's push (session_key.py)

    def open(self):
        """Push the session's one-time key first when the host is reached that way: each
        (re)connection within the 60 s the pushed key lives."""
        if self.key_push is not None and not self.is_connected:
            from dsinfra.bootstrap.session_key import session_key

            self.key_push(session_key().public_line)
        return super().open()

    def open_gateway(self):
        """The endpoint's tunnel as paramiko's ``sock``; fabric's own kinds otherwise."""
        if isinstance(self.gateway, TunnelGateway):
            return self.gateway.open_socket()
        return super().open_gateway()

    def sh(self, command: str, *, root: bool = False, warn: bool = False,
           timeout: float | None = None) -> "Output":
        """Run ``command`` through bash (as root via ``sudo -n`` when asked), logged.

        Through one long-lived shell per privilege (``Shell``) rather than invoke's Runner or
        a channel per command: a bootstrap is mostly short checks, and a new channel, bash and
        sudo for each cost more than the check. Each command runs in its own subshell with
        stdin closed (nothing may ever wait for a prompt, nor leak ``set -e`` or ``cd``).
        """
        self.log.write(f"$ {command}" + (" (root)" if root else ""))
        if not self.is_connected:
            self.open()
        shells = self.__dict__.setdefault("_shells", {})  # see ensure_file on __dict__
        shell = shells.get(root)
        if shell is None or not shell.alive:
            shell = shells[root] = Shell(self.transport, root=root and self.user != "root")
        result = shell.run(command, timeout)
        output = result.stdout + result.stderr
        if result.exited is None:
            self.log.write(f"timed out after {timeout}s\n{output}")
            raise CommandFailed(command, None, self.secrets.redact(tail(output)))
        self.log.write(f"exit {result.exited}\n{output}" if output.strip() else
                       f"exit {result.exited}")
        if result.exited == -1:
            # The channel closed without an exit status: sshd or the host went away.
            raise paramiko.SSHException(f"connection lost while running `{command}`")
        if result.exited != 0 and not warn:
            raise CommandFailed(command, result.exited, self.secrets.redact(tail(output)))
        return result

    def ok(self, command: str, *, root: bool = False) -> bool:
        """True when ``command`` exits 0 (a check, never an error)."""
        return self.sh(command, root=root, warn=True).exited == 0

    def out(self, command: str, *, root: bool = False) -> str:
        return self.sh(command, root=root).stdout.strip()

    def gather(self, commands: dict[str, str], *, root: bool = False) -> dict[str, "Output"]:
        """Several read-only checks in one round trip: name -> its stdout and exit status.

        A bootstrap is mostly checks, and through a bastion every round trip costs a network
        RTT or two. Each command runs as a group with stderr dropped, inside the one subshell
        that ``sh`` gives the whole script (a subshell each cost a fork per check, most of
        them for a builtin ``test``): a command must not ``exit``, which would end the rest.
        """
        mark = "@@dsinfra:" + token_hex(4)
        script = "; ".join(f"echo {mark}:{name}; {{ {command}\n}} 2>/dev/null </dev/null; "
                           f"echo {mark}:rc=$?" for name, command in commands.items())
        out = self.sh(script, root=root, warn=True)
        results = {m.group(2): Output(m.group(3), "", int(m.group(4)))
                   for m in GATHERED.finditer(out.stdout) if m.group(1) == mark}
        missing = [n for n in commands if n not in results]
        if missing:  # the script itself died (connection closed mid-way): not a check result
            raise paramiko.SSHException(f"checks {', '.join(missing)} returned nothing")
        return results

    def ensure_file(self, content: str | bytes, dest: str, *, mode: str = "0644") -> bool:
        """``put_file`` unless ``dest`` already has these bytes; True when it wrote. Compared
        once per connection (a polling loop re-ensures for free)."""
        data = content.encode() if isinstance(content, str) else content
        digest = hashlib.sha256(data).hexdigest()
        # Straight in __dict__: fabric turns unknown attribute writes into config entries.
        ensured = self.__dict__.setdefault("_ensured", {})
        if ensured.get(dest) == digest:
            return False
        readable = int(mode, 8) & 0o004  # anyone may read it: no sudo needed to compare
        have = self.sh(f"sha256sum {shlex.quote(dest)} 2>/dev/null", root=not readable,
                       warn=True)
        wrote = have.stdout.split()[:1] != [digest]
        if wrote:
            self.put_file(data, dest, mode=mode)
        ensured[dest] = digest
        return wrote

    def put_file(self, content: str | bytes, dest: str, *, mode: str = "0644") -> None:
        self.put_files({dest: (content, mode)})

    def put_files(self, files: dict[str, tuple[str | bytes, str]], *, then: str = "") -> None:
        """Write each ``dest: (content, mode)`` as root, through SFTP from memory, then run
        ``then`` as root, all in one command after the uploads.

        The bytes never appear on a command line or in the log; they land first in a 0700
        upload folder of the login user, then ``install`` moves them into place.
        """
        sftp = self.sftp()
        staging = ".dsinfra-upload"
        try:
            sftp.mkdir(staging, 0o700)
        except OSError:
            pass  # already there (IOError from SFTP: it exists)
        moves, uploaded = [], []
        for dest, (content, mode) in files.items():
            data = content.encode() if isinstance(content, str) else content
            name = f"~{self.user}/{staging}/{Path(dest).name}.{threading.get_ident()}"
            sftp.putfo(io.BytesIO(data), name.split("/", 1)[1])
            self.log.write(f"uploaded {len(data)} bytes for {dest} (mode {mode})")
            moves.append(f"install -D -m {mode} -o root -g root {name} {shlex.quote(dest)}")
            uploaded.append(name)
        moves.append(f"rm -f {' '.join(uploaded)}")
        self.sh(" && ".join(moves + ([then] if then else [])), root=True)


# One section of ``gather``'s output: its marker, name, output and exit status. An output
# without a final newline runs into its rc marker: match, don't split lines. Compiled once:
# a pattern with each command's random marker in it missed re's cache every time.
GATHERED = re.compile(r"(@@dsinfra:[0-9a-f]{8}):(\S+)\n(.*?)\1:rc=(\d+)\n", re.DOTALL)


def _status_after(text: str, mark: str) -> tuple[str, int] | None:
    """(what came before, exit status) when ``text`` holds ``<mark> <status>\\n``."""
    at = text.find(mark + " ")
    end = text.find("\n", at) if at >= 0 else -1
    if end < 0:
        return None
    status = text[at + len(mark) + 1:end]
    return (text[:at], int(status)) if status.isdigit() else None


class Shell:
    """``bash`` (or ``sudo -n bash``) on one channel, fed commands on stdin. After each
    command it prints a marker led by the byte 0x01, with the exit status, on stdout and one on
    stderr, so both streams come back exactly as the command wrote them."""

    def __init__(self, transport: paramiko.Transport, *, root: bool) -> None:
        self.channel = transport.open_session(timeout=30)
        self.channel.exec_command("sudo -n bash --noprofile --norc" if root
                                  else "bash --noprofile --norc")
        self.transport = transport

    @property
    def alive(self) -> bool:
        return not self.channel.closed and not self.channel.exit_status_ready() and \
            self.transport.is_active()

    def run(self, command: str, timeout: float | None) -> "Output":
        mark = "\x01" + token_hex(6)
        self.channel.sendall(f"( {command}\n) </dev/null; printf '%b %d\\n' "
                             f"'\\x01{mark[1:]}' $?; printf '%b\\n' '\\x01{mark[1:]}' >&2\n"
                             .encode())
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout if timeout else None
        code = None
        while True:
            text_out = out.decode(errors="replace")
            found = _status_after(text_out, mark)
            if found and (mark + "\n").encode() in err:
                stdout, code = found
                stderr = err.decode(errors="replace").split(mark + "\n")[0]
                return Output(stdout, stderr, code)
            if self.channel.recv_ready():
                out += self.channel.recv(65536)
            elif self.channel.recv_stderr_ready():
                err += self.channel.recv_stderr(65536)
            elif self.channel.closed or self.channel.exit_status_ready() or \
                    not self.transport.is_active():
                self.close()
                return Output(out.decode(errors="replace"), err.decode(errors="replace"), -1)
            else:
                wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if wait <= 0:
                    self.close()  # the command may still run: this shell is not reusable
                    return Output(out.decode(errors="replace"), err.decode(errors="replace"),
                                  None)
                select.select([self.channel], [], [], wait)

    def close(self) -> None:
        try:
            self.channel.close()
        except Exception:  # noqa: BLE001 - a dead transport may raise anything
            pass


@dataclass(frozen=True)
class Output:
    stdout: str
    stderr: str
    exited: int | None  # None: timed out; -1: the connection went away


@dataclass(frozen=True)
class SshSettings:
    connect_timeout_s: float = 15.0
    attempts: int = 4  # reconnects after a drop mid-run before the host is reported
    backoff_s: float = 2.0  # doubles after each failed attempt
    ssh_wait_s: float = 600.0  # a fresh instance's sshd may take minutes to come up
    reboot_wait_s: float = 900.0


def _connect_kwargs(key_path: Path | None) -> dict:
    kwargs = {"banner_timeout": 30, "auth_timeout": 30}
    if key_path:
        kwargs.update(key_filename=str(key_path), look_for_keys=False, allow_agent=False)
    return kwargs


def _config() -> Config:
    # An explicit empty SSHConfig: a user's ~/.ssh/config must not redirect or relax anything.
    return Config(ssh_config=paramiko.SSHConfig(), overrides={"run": {"in_stream": False}})


def _gateway_connection(gateway: Gateway, known: KnownHosts, settings: SshSettings) -> Connection:
    conn = Connection(gateway.address, user=gateway.user, port=gateway.port, config=_config(),
                      connect_kwargs=_connect_kwargs(gateway.key_path),
                      connect_timeout=settings.connect_timeout_s)
    conn.client.set_missing_host_key_policy(known.policy(gateway.id))
    return conn


def open_connection(host: HostSpec, known: KnownHosts, log: HostLog, secrets: Secrets,
                    settings: SshSettings) -> HostConnection:
    """Connect (through the gateway or the endpoint's tunnel when the host has one); raises
    on refusal or drop."""
    gateway = host.gateway
    if isinstance(gateway, Gateway):
        gateway = _gateway_connection(gateway, known, settings)
    pushed = host.key_path is None and host.key_push is not None
    kwargs = _connect_kwargs(host.key_path)
    if pushed:  # no key file: this session's one-time key, pushed before each connection
        from dsinfra.bootstrap.session_key import session_key

        kwargs.update(pkey=session_key().pkey, look_for_keys=False, allow_agent=False)
    conn = HostConnection(host.address, user=host.user, port=host.port, config=_config(),
                          gateway=gateway, connect_kwargs=kwargs,
                          connect_timeout=settings.connect_timeout_s)
    conn.client.set_missing_host_key_policy(known.policy(host.id))
    conn.log, conn.secrets = log, secrets
    if pushed:
        conn.key_push = host.key_push
    via = f" via {_via(host.gateway)}" if host.gateway else ""
    log.write(f"connecting to {host.user}@{host.id}{via}")
    try:
        conn.open()
    except BaseException:
        close_quietly(conn)  # and the gateway hop, which may have opened
        raise
    for opened in (conn, gateway):
        _no_delay(opened)
    return conn


def _via(gateway: Gateway | TunnelGateway) -> str:
    if isinstance(gateway, TunnelGateway):
        return f"EC2 Instance Connect Endpoint {gateway.endpoint_id}"
    return gateway.id


def _no_delay(conn: Connection | None) -> None:
    """Short commands are request/response: Nagle plus delayed ACKs would add ~40 ms each."""
    sock = getattr(getattr(conn, "transport", None), "sock", None)
    # Not the endpoint tunnel's local socket pair (AF_UNIX); websocket-client sets TCP_NODELAY
    # on the websocket's own connection.
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def close_quietly(conn: Connection | None) -> None:
    if conn is None:
        return
    try:
        conn.close()
        if isinstance(conn.gateway, Connection):
            conn.gateway.close()
    except Exception:  # noqa: BLE001 - closing a dead transport may raise anything
        pass


def is_drop(exc: BaseException) -> bool:
    from dsinfra.bootstrap.hostkeys import HostKeyRefused

    if isinstance(exc, paramiko.AuthenticationException):
        # The transport dying during auth (sshd going down for a reboot) is a drop, not a "no".
        return "transport shut down or saw EOF" in str(exc)
    if isinstance(exc, HostKeyRefused):
        return False
    if isinstance(exc, UnexpectedExit):
        return False
    return isinstance(exc, SSH_DROPS)


def open_forward(conn: HostConnection, address: str, port: int,
                 timeout_s: float = 15.0) -> paramiko.Channel:
    """A ``direct-tcpip`` channel to ``address:port`` as the node sees it, inside the SSH
    session (RFC 4254 7.2): what ``ssh -L`` opens. The only way to a node's API through an EC2
    Instance Connect Endpoint, which carries port 22 (and 3389) and nothing else."""
    if not conn.is_connected:
        conn.open()
    return conn.transport.open_channel("direct-tcpip", (address, port), ("127.0.0.1", 0),
                                       timeout=timeout_s)
