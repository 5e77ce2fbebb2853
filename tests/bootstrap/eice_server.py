"""A local stand-in for an EC2 Instance Connect Endpoint's open-tunnel websocket.

It speaks the protocol aws-cli's client speaks (aws/aws-cli
``awscli/customizations/ec2instanceconnect/eicesigner.py`` and ``websocket.py``): a GET
upgrade to ``/openTunnel`` with ``instanceConnectEndpointId``, ``remotePort`` and
``privateIpAddress`` in a SigV4-presigned query (service ``ec2-instance-connect``), then the TCP
stream as binary frames. It checks the signature itself, from the AWS SigV4 specification
(docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html), not with botocore, so
a client that signs wrongly is refused with 403, as AWS refuses it. What AWS's refusal body
says is not recorded anywhere we found; the 403 body here is ours and the tests do not rely
on its words.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlsplit

SERVICE = "ec2-instance-connect"


@dataclass
class TunnelRequest:
    query: dict[str, str]
    host: str
    signature_ok: bool


@dataclass
class FakeEndpoint:
    endpoint_id: str
    secret_key: str
    region: str = "us-east-1"
    requests: list[TunnelRequest] = field(default_factory=list)
    close_reason: str | None = None  # close every tunnel at once with this reason (code 1008)
    port: int = 0

    @property
    def dns_name(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "FakeEndpoint":
        from websockets.sync.server import serve

        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._check)
        self.port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def _check(self, connection, request):
        split = urlsplit(request.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        host = request.headers.get("Host", "")
        ok = split.path == "/openTunnel" and verify_sigv4(split.query, host, self.secret_key,
                                                          self.region)
        self.requests.append(TunnelRequest(query, host, ok))
        if not ok or query.get("instanceConnectEndpointId") != self.endpoint_id:
            return connection.respond(403, "signature or endpoint id refused\n")
        return None

    def _handle(self, connection) -> None:
        if self.close_reason is not None:
            connection.close(1008, self.close_reason)
            return
        query = dict(parse_qsl(urlsplit(connection.request.path).query))
        target = socket.create_connection((query["privateIpAddress"], int(query["remotePort"])))

        def down() -> None:
            try:
                while data := target.recv(65000):
                    connection.send(data)
            except Exception:  # noqa: BLE001 - the client closed the websocket first
                pass
            finally:
                connection.close()

        threading.Thread(target=down, daemon=True).start()
        try:
            for message in connection:
                target.sendall(message)
        except Exception:  # noqa: BLE001 - the client went away
            pass
        finally:
            target.close()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def verify_sigv4(raw_query: str, host: str, secret_key: str, region: str) -> bool:
    """Recompute a presigned request's signature (SigV4, query-string form)."""
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    params = dict(pairs)
    signature = params.pop("X-Amz-Signature", "")
    if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" or \
            params.get("X-Amz-SignedHeaders") != "host":
        return False
    _, date, cred_region, service, terminator = params["X-Amz-Credential"].split("/")
    if (cred_region, service, terminator) != (region, SERVICE, "aws4_request"):
        return False
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                               for k, v in sorted(params.items()))
    canonical = "\n".join(["GET", "/openTunnel", canonical_query, f"host:{host}", "",
                           "host", hashlib.sha256(b"").hexdigest()])
    scope = f"{date}/{region}/{SERVICE}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), date), region), SERVICE),
                "aws4_request")
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(),
                               signature)
