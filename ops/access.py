"""How dsinfra reaches a stack's nodes: the EC2 Instance Connect Endpoint's tunnel, signed
with the caller's AWS credentials (cloud/eice.py), handed to bootstrap as ``tunnel_url``."""

from __future__ import annotations

from collections.abc import Callable

from dsinfra.outputs import StackOutputs

TunnelUrl = Callable[[str, int], str]  # (private ip, port) -> presigned open-tunnel URL


def tunnel_url_for(outputs: StackOutputs, region: str):
    """(private ip, port) -> presigned URL for the stack's endpoint; None when its outputs
    name no endpoint (stacks made before dsinfra created one)."""
    if not (outputs.connect_endpoint_id and outputs.connect_endpoint_dns):
        return None
    from dsinfra.cloud.eice import tunnel_url_factory

    return tunnel_url_factory(outputs.region or region, outputs.connect_endpoint_id,
                              outputs.connect_endpoint_dns)


def tunnel_healthy(tunnel_url: TunnelUrl, private_ip: str, port: int, path: str,
                   timeout_s: float) -> bool:
    """GET ``path`` on ``private_ip:port`` through the endpoint's tunnel: True on 200. How
    `up` checks an API that answers only inside the VPC."""
    import socket

    from dsinfra.bootstrap.tunnel import TunnelError, open_tunnel

    try:
        sock = open_tunnel(tunnel_url(private_ip, port), timeout_s=timeout_s)
    except TunnelError:
        return False
    try:
        sock.settimeout(timeout_s)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {private_ip}:{port}\r\n"
                     "Connection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head and len(head) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        status = head.split(b"\r\n", 1)[0].split()
        return len(status) >= 2 and status[1] == b"200"
    except (OSError, socket.timeout):
        return False
    finally:
        sock.close()
