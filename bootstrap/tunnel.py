"""SSH through an EC2 Instance Connect Endpoint: the open-tunnel websocket as a socket.

The endpoint's protocol, as aws-cli speaks it (``awscli/customizations/ec2instanceconnect/``:
``eicesigner.py`` signs, ``websocket.py`` carries): a GET upgrade to
``wss://<endpoint dns>/openTunnel?instanceConnectEndpointId=..&remotePort=..&privateIpAddress=..``
presigned with SigV4 (service ``ec2-instance-connect``, 60 s), then the TCP stream of the
remote port as binary frames both ways. A text frame is an error; a close frame with a code
other than 1000 carries the reason. The URL is signed by the caller (``cloud/eice.py``);
this module only carries bytes, so bootstrap imports no boto3 edge.

paramiko wants a socket (``SSHClient.connect(sock=)``): ``open_tunnel`` hands it one end of a
socket pair and two threads pump the other end to and from the websocket.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from dsinfra.errors import CloudError

CHUNK_BYTES = 65_000  # aws-cli's frame size
NORMAL_CLOSE = 1000


class TunnelError(CloudError):
    """The endpoint refused the tunnel or closed it with a reason."""


@dataclass(frozen=True)
class TunnelGateway:
    """How fabric reaches one host: ``url()`` is a freshly presigned open-tunnel URL (each
    connection and reconnection signs anew: a signature lives 60 s)."""

    endpoint_id: str
    url: Callable[[], str] = field(compare=False, repr=False)
    timeout_s: float = 15.0

    def open_socket(self) -> socket.socket:
        return open_tunnel(self.url(), timeout_s=self.timeout_s, endpoint_id=self.endpoint_id)


def open_tunnel(url: str, *, timeout_s: float = 15.0, endpoint_id: str = "") -> socket.socket:
    """Open the websocket at ``url``; returns a socket carrying the remote port's stream."""
    import websocket

    where = endpoint_id or "the EC2 Instance Connect Endpoint"
    try:
        ws = websocket.create_connection(url, timeout=timeout_s, enable_multithread=True)
    except websocket.WebSocketBadStatusException as exc:
        body = (exc.resp_body or b"").decode("utf-8", "replace").strip().splitlines()
        raise TunnelError(f"{where} refused the tunnel: HTTP {exc.status_code}"
                          + (f" ({body[0][:200]})" if body else ""),
                          hint="Your AWS identity needs ec2-instance-connect:OpenTunnel on "
                               "the endpoint (see the README's access section).") from None
    except (OSError, websocket.WebSocketException) as exc:
        raise TunnelError(f"cannot reach {where}: {exc}") from None
    ws.settimeout(None)
    ours, theirs = socket.socketpair()
    pump = _Pump(ws, ours)
    threading.Thread(target=pump.upstream, name="eice-up", daemon=True).start()
    threading.Thread(target=pump.downstream, name="eice-down", daemon=True).start()
    return theirs


class _Pump:
    """Bytes from the local end to binary frames, and frames back to the local end."""

    def __init__(self, ws, local: socket.socket) -> None:
        self.ws, self.local = ws, local
        self.close_reason: str | None = None

    def upstream(self) -> None:
        import websocket

        try:
            while data := self.local.recv(CHUNK_BYTES):
                self.ws.send_binary(data)
        except (OSError, websocket.WebSocketException):
            # The endpoint ended the tunnel (its 1 hour, or a close) while SSH still had bytes
            # to send, e.g. the disconnect message of a session being closed: nothing to carry.
            pass
        finally:
            self._close()

    def downstream(self) -> None:
        import websocket

        try:
            while True:
                opcode, data = self.ws.recv_data(control_frame=False)
                if opcode == websocket.ABNF.OPCODE_BINARY:
                    self.local.sendall(data)
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    self.close_reason = _close_reason(data)
                    break
                else:  # a text frame: the endpoint's error, never part of the stream
                    self.close_reason = data.decode("utf-8", "replace")
                    break
        except (OSError, websocket.WebSocketException):
            pass
        finally:
            self._close()

    def _close(self) -> None:
        for close in (lambda: self.local.shutdown(socket.SHUT_RDWR), self.local.close,
                      self.ws.close):
            try:
                close()
            except (OSError, Exception):  # noqa: BLE001 - either side may be gone already
                pass


def _close_reason(payload: bytes) -> str | None:
    if len(payload) < 2:
        return None
    code = int.from_bytes(payload[:2], "big")
    return None if code == NORMAL_CLOSE else payload[2:].decode("utf-8", "replace")
