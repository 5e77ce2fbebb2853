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

CONTRACT (what the real endpoint does, and this double with it):

- Ports 22 and 3389 only. EC2 User Guide, "Connect to an instance using EC2 Instance Connect
  Endpoint" (docs.aws.amazon.com/AWSEC2/latest/UserGuide/connect-using-eice.html), and its
  prerequisites page: "Only ports 22 and 3389 are supported." An open-tunnel to any other
  ``remotePort`` fails the websocket upgrade with the JSON body
  ``{"ErrorCode":"InvalidParameter","Message":"The specified RemotePort is not valid. Specify
  either 22 or 3389 as the RemotePort and retry your request."}``, as aws-cli logged it in
  aidansteele/rdsconn issue #5 (2023-06-28; the CLI then prints
  ``AWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE``) and as aws/aws-toolkit-jetbrains issue #3741
  reports ("this service blocks any ports other than 22 (SSH) and 3389 (RDP)"). The body is
  the recorded one word for word; the HTTP status code of that refusal is not recorded in any
  source we found: 400 here (the class of AWS's ``InvalidParameter``), and no test relies on
  the number. Anything else (an API on 8000) must travel inside SSH as a ``direct-tcpip``
  channel, as ``ssh -L`` does.
- An established connection lasts at most 1 hour (same page: "The maximum connection
  duration is 1 hour"; aws-cli's ``maxTunnelDuration`` is capped at 3600 s). ``max_age_s``
  is 3600 by default and shorter in tests; at that age the double ends the tunnel. The close
  code AWS uses then is not documented: a normal close (1000) here, so a client sees the
  stream end (EOF) and must open a new tunnel, which is what the tests check.
- Signature: SigV4 presigned query, service ``ec2-instance-connect``, 60 s (above).
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlsplit

SERVICE = "ec2-instance-connect"
# The day-two tests' endpoint (conftest.py's `endpoint` fixture). Here, not in conftest.py:
# `from conftest import` finds whichever conftest module was imported first (tests/infra's
# when both folders run together).
EICE_ENDPOINT_ID = "eice-0fedcba9876543210"
EICE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example secret
ALLOWED_PORTS = ("22", "3389")
MAX_AGE_S = 3600.0
# Recorded word for word (aidansteele/rdsconn#5); see CONTRACT above.
BAD_PORT_BODY = ('{"ErrorCode":"InvalidParameter","Message":"The specified RemotePort is not '
                 'valid. Specify either 22 or 3389 as the RemotePort and retry your request."}')
BAD_PORT_STATUS = 400  # not recorded anywhere we found (CONTRACT)


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
    max_age_s: float = MAX_AGE_S  # AWS: 1 hour; tests make it shorter
    port: int = 0
    expired: int = 0  # tunnels ended at max_age_s
    _targets: set = field(default_factory=set, repr=False)
    _sockets: set = field(default_factory=set, repr=False)  # the websockets' own TCP sockets
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def dns_name(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "FakeEndpoint":
        from websockets.sync.server import serve

        # close_timeout: a client that is gone never answers the close frame; waiting the
        # default 10 s for it made every stop() take 10 s.
        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._check,
                             close_timeout=0.2, ping_interval=None)
        self.port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Ends every tunnel and returns once nothing is left running: no fixed wait."""
        with self._lock:
            ends = list(self._targets) + list(self._sockets)
        # Both ends of every tunnel, at once: a close handshake with a client that is going
        # away anyway would only wait out close_timeout.
        for sock in ends:
            _shut(sock)
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
        if query.get("remotePort") not in ALLOWED_PORTS:
            return connection.respond(BAD_PORT_STATUS, BAD_PORT_BODY)
        return None

    def _handle(self, connection) -> None:
        if self.close_reason is not None:
            connection.close(1008, self.close_reason)
            return
        query = dict(parse_qsl(urlsplit(connection.request.path).query))
        target = socket.create_connection((query["privateIpAddress"], int(query["remotePort"])))
        with self._lock:
            self._targets.add(target)
            self._sockets.add(connection.socket)

        def expire() -> None:  # the endpoint's maximum connection age
            self.expired += 1
            _shut(target)
            connection.close(1000)

        timer = threading.Timer(self.max_age_s, expire)
        timer.daemon = True
        timer.start()

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
            timer.cancel()
            with self._lock:
                self._targets.discard(target)
                self._sockets.discard(connection.socket)
            _shut(target)
            target.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


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
