"""How dsinfra reaches a stack's nodes: the EC2 Instance Connect Endpoint's tunnel to port 22,
signed with the caller's AWS credentials (cloud/eice.py), handed to bootstrap as ``tunnel_url``;
the one-time key pushed with EC2 Instance Connect (``key_push``); and the API reached as SSH
``direct-tcpip`` channels inside that session (``ApiOverSsh``), since the endpoint carries
ports 22 and 3389 only."""

from __future__ import annotations

import threading
from collections.abc import Callable

from dsinfra.outputs import StackOutputs

TunnelUrl = Callable[[str, int], str]  # (private ip, port) -> presigned open-tunnel URL
KeyPush = Callable[[str, str, str], None]  # (instance id, os user, public key line) -> None


def tunnel_url_for(outputs: StackOutputs, region: str):
    """(private ip, port) -> presigned URL for the stack's endpoint; None when its outputs
    name no endpoint (stacks made before dsinfra created one)."""
    if not (outputs.connect_endpoint_id and outputs.connect_endpoint_dns):
        return None
    from dsinfra.cloud.eice import tunnel_url_factory

    return tunnel_url_factory(outputs.region or region, outputs.connect_endpoint_id,
                              outputs.connect_endpoint_dns)


def key_push_for(outputs: StackOutputs, region: str, key_path) -> KeyPush | None:
    """EC2 Instance Connect's SendSSHPublicKey for the stack's instances, unless the user
    gave a private key file (then that key, from sshPublicKey, logs in)."""
    if key_path:
        return None
    from dsinfra.cloud.eice import key_pusher

    return key_pusher(outputs.region or region)


class ApiOverSsh:
    """HTTP GETs on one node's API port, each a ``direct-tcpip`` channel inside one SSH
    session through the endpoint (as ``ssh -L`` carries them). The session is opened on first
    use and opened again when it drops (the endpoint ends a connection at 1 hour)."""

    def __init__(self, host, known_hosts, connect_timeout_s: float = 15.0) -> None:
        from dsinfra.bootstrap.ssh_session import SshSession

        self.host, self.known, self.connect_timeout_s = host, known_hosts, connect_timeout_s
        self._session: SshSession | None = None
        self._make = lambda: SshSession(host, known_hosts, connect_timeout_s)
        self._lock = threading.Lock()

    @property
    def target(self) -> str:
        return self.host.private_address or self.host.address

    def channel(self, port: int, timeout_s: float = 15.0):
        """A new channel to the node's ``port``; reconnects once if the session is gone."""
        for attempt in (1, 2):
            session = self._connection()
            try:
                return session.forward(self.target, port, timeout_s)
            except Exception:  # noqa: BLE001 - a dead session: open a new one, once
                with self._lock:
                    if self._session is session:
                        session.close()
                        self._session = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _connection(self):
        with self._lock:
            if self._session is None or not self._session.alive:
                if self._session is not None:
                    self._session.close()
                self._session = self._make().open()
            return self._session

    def get_status(self, port: int, path: str, timeout_s: float) -> str:
        """``healthy`` on a 2xx answer, ``HTTP <code>`` otherwise, ``unreachable`` when no
        answer came (no session, refused channel, timeout)."""
        try:
            channel = self.channel(port, timeout_s)
        except Exception:  # noqa: BLE001 - SSH, tunnel or channel refused: no answer
            return "unreachable"
        try:
            channel.settimeout(timeout_s)
            channel.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.target}:{port}\r\n"
                            "Connection: close\r\n\r\n".encode())
            head = b""
            while b"\r\n" not in head and len(head) < 4096:
                chunk = channel.recv(4096)
                if not chunk:
                    break
                head += chunk
            status = head.split(b"\r\n", 1)[0].split()
            if len(status) < 2 or not status[1].isdigit():
                return "unreachable"
            code = int(status[1])
            return "healthy" if 200 <= code < 300 else f"HTTP {code}"
        except OSError:
            return "unreachable"
        finally:
            channel.close()

    def get_text(self, port: int, path: str, timeout_s: float,
                 max_bytes: int = 8 * 1024 * 1024) -> tuple[int, str]:
        """(HTTP status, body) of a GET on the node's ``port`` (``top``'s /metrics). The answer
        is read by the standard library's HTTP client (Content-Length or chunked, as uvicorn
        sends /metrics); a body over ``max_bytes`` or no answer raises OSError."""
        import http.client

        channel = self.channel(port, timeout_s)
        try:
            channel.settimeout(timeout_s)
            channel.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.target}:{port}\r\n"
                            "Accept: text/plain\r\nConnection: close\r\n\r\n".encode())
            answer = http.client.HTTPResponse(channel)  # reads through channel.makefile("rb")
            try:
                answer.begin()
                body = answer.read(max_bytes + 1)
            except (http.client.HTTPException, EOFError) as exc:
                raise OSError(f"no HTTP answer on port {port}: {exc}") from None
            if len(body) > max_bytes:
                raise OSError(f"the answer on port {port}{path} is over {max_bytes:,} bytes")
            return answer.status, body.decode("utf-8", "replace")
        finally:
            channel.close()

    def healthy(self, port: int, path: str, timeout_s: float) -> bool:
        """True on 200 (up's health check)."""
        return self.get_status(port, path, timeout_s) == "healthy"

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
            self._session = None
