"""Day two on a running stack: run a command on its nodes (`dsinfra exec`) and read the engine's
journal (`dsinfra logs`), over SSH through the stack's EC2 Instance Connect Endpoint.

Host keys stay pinned: the keys bootstrap recorded (``<state>/known_hosts``) and, with
``read_console``, the ones cloud-init printed to the console; an unknown key is refused.
"""

from __future__ import annotations

import dataclasses

import re
import shlex
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dsinfra import waits
from dsinfra.errors import UserError
from dsinfra.outputs import StackOutputs

ENGINE_UNIT = "dsinfra-engine.service"
# journalctl's --since takes "YYYY-MM-DD HH:MM:SS", "today", "-1h"...: we pass our one duration
# grammar (30s, 15m, 2h, 1d) as journalctl's relative form.
_SINCE_UNITS = {"s": "s", "m": "min", "h": "h", "d": "d"}


@dataclass(frozen=True)
class NodeResult:
    node: str  # instance id
    role: str
    address: str
    exit_status: int | None  # None: the command did not finish (no connection, timeout)
    stdout: str
    stderr: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Access:
    """How to reach a stack's nodes: built by the CLI (or a test) from the outputs."""

    outputs: StackOutputs
    key_path: Path | None
    tunnel_url: Callable[[str, int], str] | None
    known_hosts: object  # bootstrap.hostkeys.KnownHosts
    connect_timeout_s: float = 15.0
    # (instance id, os user, public key) -> None: EC2 Instance Connect's SendSSHPublicKey,
    # used when key_path is None (the session's one-time key; ops/access.py).
    key_push: Callable[[str, str, str], None] | None = None


def select_hosts(access: Access, node: str | None) -> list:
    """The stack's hosts, or the one ``node`` names (instance id, ``head`` or an index)."""
    from dsinfra.bootstrap.hosts import hosts_from_outputs

    hosts = hosts_from_outputs(access.outputs, key_path=access.key_path,
                               tunnel_url=access.tunnel_url, key_push=access.key_push)
    if node is None:
        return hosts
    chosen = [h for i, h in enumerate(hosts)
              if node in (h.name, h.instance_id, str(i)) or (node == "head" and h.role == "head")]
    if not chosen:
        names = ", ".join(["head"] + [f"{i} ({h.name})" for i, h in enumerate(hosts)])
        raise UserError(f"--node {node!r}: no such node; the stack has {names}")
    return chosen


def run_on_nodes(access: Access, command: str, *, node: str | None = None, root: bool = False,
                 timeout_s: float | None = None) -> list[NodeResult]:
    """Run ``command`` on every node (or one) in parallel; one result per node, head first."""
    if not command.strip():
        raise UserError("nothing to run: give the command after --, e.g. "
                        "`dsinfra exec dev -- nvidia-smi`")
    hosts = select_hosts(access, node)
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        return waits.map_all(pool, lambda h: _run_one(access, h, command, root, timeout_s),
                             hosts)


def _session(access: Access, host):
    """The one SSH session helper (bootstrap/ssh_session.py), not yet connected."""
    from dsinfra.bootstrap.ssh_session import SshSession

    return SshSession(host, access.known_hosts, access.connect_timeout_s)


def _run_one(access: Access, host, command: str, root: bool,
             timeout_s: float | None) -> NodeResult:
    session = _session(access, host)
    try:
        out = session.open().run(command, root=root, timeout_s=timeout_s)
        return NodeResult(host.name, host.role, host.address, out.exited, out.stdout,
                          out.stderr)
    except Exception as exc:  # noqa: BLE001 - reported per node, the others still run
        from dsinfra.bootstrap.remote import CommandFailed

        if isinstance(exc, CommandFailed):  # timed out
            return NodeResult(host.name, host.role, host.address, None, "", "",
                              f"timed out after {timeout_s:g} s")
        return NodeResult(host.name, host.role, host.address, None, "", "",
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        session.close()


def journal_command(*, since: str | None, follow: bool, lines: int = 200) -> str:
    """The journalctl line for the engine's unit; ``since`` in dsinfra's duration grammar."""
    argv = ["journalctl", "-u", ENGINE_UNIT, "--no-pager", "-o", "short-iso"]
    if since:
        argv += ["--since", journal_since(since)]
    else:
        argv += ["-n", str(lines)]
    if follow:
        argv.append("-f")
    return shlex.join(argv)


_DURATION = re.compile(r"^([1-9][0-9]{0,5})(s|m|h|d)$")


def journal_since(value: str) -> str:
    """``30m`` -> journalctl's ``-30min``: the journal of the last 30 minutes."""
    match = _DURATION.fullmatch(value.strip())
    if not match:
        raise UserError(f"invalid value for --since: {value!r}; allowed: a number and a unit "
                        "s, m, h or d, e.g. 30m or 2h")
    return f"-{match.group(1)}{_SINCE_UNITS[match.group(2)]}"


def with_replica_nodes(outputs: StackOutputs, region: str,
                       read_group: Callable[..., Any] | None = None) -> StackOutputs:
    """The outputs with a replicas stack's nodes: its Auto Scaling group's InService
    instances as AWS lists them now (cloud/replica_hosts.py), since the group launches and
    replaces them after `up`; outputs without a group unchanged. A group that cannot be read
    raises CloudError (exit 3): no command guesses which nodes a stack has."""
    if not outputs.replica_group:
        return outputs
    if read_group is None:
        from dsinfra.cloud.replica_hosts import read_group
    state = read_group(outputs.region or region, outputs.replica_group)
    return dataclasses.replace(outputs, nodes=list(outputs.nodes) + list(state.nodes))


def access_for_stack(stack: str, *, key_path: Path | None,
                     read_console: Callable[[str, str], str] | None = None) -> Access:
    """The deployed stack's outputs, its endpoint's tunnel and the pinned host keys."""
    from dsinfra.bootstrap.hostkeys import KnownHosts, fetch_console_pins
    from dsinfra.infra.automation import PulumiEngine
    from dsinfra.ops.access import key_push_for, tunnel_url_for
    from dsinfra.paths import state_dir
    from dsinfra.stackfiles import find_project_dir, load_stack

    project = find_project_dir()
    config = load_stack(stack, project)
    outputs = with_replica_nodes(StackOutputs.from_dict(PulumiEngine(project).outputs(stack)),
                                 config.region)
    if not outputs.nodes:
        raise UserError(f"stack {stack} has no nodes (not deployed, or stopped by `down`)",
                        hint=f"Run `dsinfra up {stack}` first.")
    known = KnownHosts(record_path=state_dir() / "known_hosts", trust_on_first_use=False)
    known.load_recorded()
    access = Access(outputs, key_path, tunnel_url_for(outputs, config.region), known,
                    key_push=key_push_for(outputs, config.region, key_path))
    if read_console is not None:
        for host in select_hosts(access, None):
            if not known.pins.get(host.id) and host.instance_id:
                pins = fetch_console_pins(host.instance_id, outputs.region or config.region,
                                          read_console)
                if pins:
                    known.pins[host.id] = pins
    return access


def follow_journal(access: Access, node: str, command: str,
                   emit: Callable[[str], None]) -> None:
    """Stream ``journalctl -f`` from one node until interrupted."""
    (host,) = select_hosts(access, node)[:1]
    session = _session(access, host).open()
    try:
        session.stream(command, emit)
    finally:
        session.close()


_FORWARD = re.compile(r"^(?:([1-9][0-9]{0,4}):)?([1-9][0-9]{0,4})$")


def parse_forward(spec: str) -> tuple[int, int]:
    """``[LOCAL:]REMOTE`` -> (local port, remote port); the local port defaults to REMOTE."""
    match = _FORWARD.fullmatch(spec.strip())
    ports = (int(match.group(1) or match.group(2)), int(match.group(2))) if match else (0, 0)
    if not match or not all(1 <= p <= 65535 for p in ports):
        raise UserError(f"invalid value for [LOCAL:]REMOTE: {spec!r}; allowed: ports 1-65535, "
                        "e.g. 8000 or 18000:8000")
    return ports


class PortForward:
    """127.0.0.1:LOCAL -> the node's REMOTE port, as ``ssh -L`` does it: one SSH session through
    the stack's EC2 Instance Connect Endpoint (port 22, the only one it carries besides 3389),
    and a ``direct-tcpip`` channel inside it per local connection. A session the endpoint ends
    (at 1 hour) is opened again on the next connection."""

    def __init__(self, access: Access, node: str, local_port: int, remote_port: int) -> None:
        import socket

        from dsinfra.ops.access import ApiOverSsh

        if access.tunnel_url is None:
            raise UserError("the stack's outputs name no EC2 Instance Connect Endpoint",
                            hint="Run `dsinfra up STACK` once to add it; nothing is replaced.")
        (self.host,) = select_hosts(access, node)[:1]
        self.access, self.remote_port = access, remote_port
        self.session = ApiOverSsh(self.host, access.known_hosts, access.connect_timeout_s)
        try:
            self.listener = socket.create_server(("127.0.0.1", local_port))
        except OSError as exc:  # EADDRINUSE, EACCES: the user's choice of LOCAL
            raise UserError(f"invalid value for the local port: {local_port}; allowed: a port "
                            f"free on 127.0.0.1 ({exc.strerror or exc})",
                            hint="Pick another LOCAL in LOCAL:REMOTE, or stop what uses it.") \
                from None
        self.local_port = self.listener.getsockname()[1]

    def serve_forever(self) -> None:
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._carry, args=(client,), daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        self.session.close()

    def _carry(self, client) -> None:
        import threading

        try:
            remote = self.session.channel(self.remote_port, self.access.connect_timeout_s)
        except Exception:  # noqa: BLE001 - no session or the node refused the port
            client.close()
            return
        threading.Thread(target=_copy, args=(remote, client), daemon=True).start()
        _copy(client, remote)


def _copy(source, sink) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (sink, source):
            try:
                end.shutdown(2)  # SHUT_RDWR, for a socket and a paramiko channel alike
            except (OSError, EOFError):
                pass


def interactive_shell(access: Access, node: str, stdin, stdout) -> int:
    """A login shell on ``node`` through the endpoint: a terminal in raw mode when ``stdin``
    is one, else the shell reads its commands from ``stdin``. Returns the shell's exit status.
    ``stdin``/``stdout``: binary file objects with a ``fileno``."""
    (host,) = select_hosts(access, node)[:1]
    session = _session(access, host).open()
    try:
        return session.shell(stdin, stdout)
    finally:
        session.close()
