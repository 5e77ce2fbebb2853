"""A Network Load Balancer double on loopback, for the rolling-deploy twin
(test_deploy_twin.py): a TCP listener that forwards each client connection to one registered,
healthy target, active HTTP health checks, and deregistration with connection draining. It is
also the controller's ELBv2 endpoint for the one call moto cannot answer truthfully
(DescribeTargetHealth: moto reports every target ``healthy`` at once); every other ELBv2 call
is passed to moto unchanged.

CONTRACT (what AWS documents, which this double enforces; sources beside each):
- Routing: "The load balancer starts routing requests to a newly registered target as soon as
  the registration process completes and the targets pass the initial health checks" and
  "each load balancer node routes requests only to the healthy targets" (ELB User Guide for
  Network Load Balancers, "Health checks for Network Load Balancer target groups"). A TCP
  listener forwards connections, not requests: a connection stays on the target it was given.
- Health: a target is ``initial`` from registration until it passes ``HealthyThresholdCount``
  consecutive checks ("The number of consecutive health check successes required before
  considering a target healthy. The range is 2-10", API reference, CreateTargetGroup), and
  ``unhealthy`` after ``UnhealthyThresholdCount`` consecutive failures. An HTTP check passes on
  the matcher's codes (default 200-399 for NLB HTTP checks; dsinfra's target group asks for
  200: infra/loadbalancer.py) within the check timeout. Reason codes as in the API reference,
  TargetHealth: Elb.RegistrationInProgress / Elb.InitialHealthChecking,
  Target.FailedHealthChecks, Target.DeregistrationInProgress.
- Deregistration: "The load balancer stops sending requests to targets that are deregistering,
  but uses connection draining to ensure that in-flight traffic completes on the existing
  connections" (API reference, DeregisterTargets); "The initial state of a deregistering target
  is draining. After the deregistration delay elapses, the deregistration process completes
  and the state of the target is unused. If the target is part of an Auto Scaling group, it
  can be terminated and replaced" (ELB User Guide, "Deregistration delay"). When the delay
  ends, this double closes what is still open on the target (what the target's termination
  does on AWS, or the ``deregistration_delay.connection_termination.enabled`` attribute).
- An Auto Scaling group attached to the target group registers each instance it launches and,
  before terminating one, deregisters it and waits for the deregistration delay (EC2 Auto
  Scaling User Guide, "Use Elastic Load Balancing to distribute incoming application traffic
  in your Auto Scaling group"). moto does neither (its TerminateInstanceInAutoScalingGroup
  terminates at once and leaves the target registered), so the twin calls ``register`` and
  ``deregister`` here and ends a replica's host only once ``drained`` says so.

Not modelled: cross-zone routing (one zone), fail-open when every target is unhealthy, passive
health checks, and the propagation delay after which a deregistered target stops getting new
connections (the User Guide warns "the target may still receive connections due to
configuration propagation delay"; on AWS the target still runs then, as it runs here until
``drained``).
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REASONS = {"initial": ("Elb.InitialHealthChecking", "Initial health checks in progress"),
           "unhealthy": ("Target.FailedHealthChecks", "Health checks failed"),
           "draining": ("Target.DeregistrationInProgress",
                        "Target deregistration is in progress")}


@dataclass
class Target:
    instance_id: str
    address: str
    state: str = "initial"
    passes: int = 0
    fails: int = 0
    drain_until: float | None = None
    open: set = field(default_factory=set)  # the client sockets forwarded to it, still open
    connections: int = 0  # forwarded in all


class NlbDouble:
    def __init__(self, moto_url: str, target_group_arn: str, *, port: int, health_path: str,
                 deregistration_delay_s: float, interval_s: float = 0.1,
                 healthy_threshold: int = 3, unhealthy_threshold: int = 2,
                 check_timeout_s: float = 1.0) -> None:
        self.moto_url, self.arn, self.port, self.path = moto_url, target_group_arn, port, \
            health_path
        self.delay_s, self.interval_s = deregistration_delay_s, interval_s
        self.healthy_threshold, self.unhealthy_threshold = healthy_threshold, unhealthy_threshold
        self.check_timeout_s = check_timeout_s
        self.targets: dict[str, Target] = {}
        self.lock = threading.Lock()
        self.no_target = 0  # connections refused: no healthy target (must stay 0)
        self.log: list[tuple[float, str, str]] = []  # (time, instance, state) transitions
        self._rr = itertools.count()
        self._stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.api = ThreadingHTTPServer(("127.0.0.1", 0), self._api_handler())
        self.api_url = f"http://127.0.0.1:{self.api.server_address[1]}"

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> "NlbDouble":
        for target in (self._accept, self._health_loop, self.api.serve_forever):
            threading.Thread(target=target, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.api.shutdown()
        self.listener.close()
        with self.lock:
            for t in self.targets.values():
                for sock in list(t.open):
                    _close(sock)

    # --- registration (the Auto Scaling side) ----------------------------------------------
    def register(self, instance_id: str, address: str) -> None:
        with self.lock:
            self.targets[instance_id] = Target(instance_id, address)
            self._note(instance_id, "initial")

    def deregister(self, instance_id: str) -> None:
        with self.lock:
            t = self.targets.get(instance_id)
            if t is not None and t.state != "draining":
                t.state, t.drain_until = "draining", time.monotonic() + self.delay_s
                self._note(instance_id, "draining")

    def drained(self, instance_id: str) -> bool:
        """True once the target's deregistration completed (state ``unused``: gone)."""
        self._expire()
        with self.lock:
            return instance_id not in self.targets

    def state(self, instance_id: str) -> str | None:
        with self.lock:
            t = self.targets.get(instance_id)
            return t.state if t else None

    def _note(self, instance_id: str, state: str) -> None:
        self.log.append((time.monotonic(), instance_id, state))

    def _expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            for iid, t in list(self.targets.items()):
                if t.state == "draining" and now >= t.drain_until:
                    for sock in list(t.open):
                        _close(sock)
                    del self.targets[iid]
                    self._note(iid, "unused")

    # --- health checks ---------------------------------------------------------------------
    def _health_loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._expire()
            with self.lock:
                checked = [t for t in self.targets.values() if t.state != "draining"]
            for t in checked:
                ok = self._check(t.address)
                with self.lock:
                    if t.state == "draining" or self.targets.get(t.instance_id) is not t:
                        continue
                    t.passes, t.fails = (t.passes + 1, 0) if ok else (0, t.fails + 1)
                    if t.state != "healthy" and t.passes >= self.healthy_threshold:
                        t.state = "healthy"
                        self._note(t.instance_id, "healthy")
                    elif t.state != "unhealthy" and t.fails >= self.unhealthy_threshold:
                        t.state = "unhealthy"
                        self._note(t.instance_id, "unhealthy")

    def _check(self, address: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{address}:{self.port}{self.path}",
                                        timeout=self.check_timeout_s) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    # --- the TCP listener ------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _pick(self) -> Target | None:
        with self.lock:
            healthy = [t for t in self.targets.values() if t.state == "healthy"]
            if not healthy:
                return None
            return healthy[next(self._rr) % len(healthy)]

    def _forward(self, client: socket.socket) -> None:
        target = self._pick()
        if target is None:
            with self.lock:
                self.no_target += 1
            _close(client)
            return
        try:
            upstream = socket.create_connection((target.address, self.port), timeout=5)
        except OSError:
            _close(client)
            return
        upstream.settimeout(None)
        with self.lock:
            target.open.add(client)
            target.open.add(upstream)
            target.connections += 1
        done = threading.Event()

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            finally:
                done.set() if src is upstream else None

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()
        with self.lock:
            target.open.discard(client)
            target.open.discard(upstream)
        _close(client)
        _close(upstream)

    # --- the ELBv2 API ---------------------------------------------------------------------
    def describe_target_health_xml(self) -> str:
        self._expire()
        members = []
        with self.lock:
            for t in self.targets.values():
                reason = REASONS.get(t.state)
                health = f"<State>{t.state}</State>" + (
                    f"<Reason>{reason[0]}</Reason><Description>{reason[1]}</Description>"
                    if reason else "")
                members.append(f"<member><Target><Id>{t.instance_id}</Id><Port>{self.port}"
                               f"</Port></Target><HealthCheckPort>{self.port}</HealthCheckPort>"
                               f"<TargetHealth>{health}</TargetHealth></member>")
        return ('<DescribeTargetHealthResponse xmlns="http://elasticloadbalancing.amazonaws.com/'
                'doc/2015-12-01/"><DescribeTargetHealthResult><TargetHealthDescriptions>'
                + "".join(members) + "</TargetHealthDescriptions></DescribeTargetHealthResult>"
                "<ResponseMetadata><RequestId>nlb-double</RequestId></ResponseMetadata>"
                "</DescribeTargetHealthResponse>")

    def _api_handler(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                form = urllib.parse.parse_qs(body.decode())
                if form.get("Action") == ["DescribeTargetHealth"] and \
                        form.get("TargetGroupArn") == [double.arn]:
                    return self._send(200, double.describe_target_health_xml().encode(),
                                      "text/xml")
                request = urllib.request.Request(
                    double.moto_url + self.path, data=body, method="POST",
                    headers={k: v for k, v in self.headers.items()
                             if k.lower() not in ("host", "content-length")})
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        status, data, kind = answer.status, answer.read(), \
                            answer.headers.get("Content-Type", "text/xml")
                except urllib.error.HTTPError as exc:
                    status, data, kind = exc.code, exc.read(), \
                        exc.headers.get("Content-Type", "text/xml")
                return self._send(status, data, kind)

            def _send(self, status: int, data: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
