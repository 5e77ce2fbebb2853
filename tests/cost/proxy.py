"""A real HTTP proxy on loopback in front of the moto server, to inject what AWS does under
load: throttling (400 RequestLimitExceeded), 5xx answers, and slow or hanging calls. It counts
every request by API action, so tests can assert how many times an action was really sent."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

THROTTLE_BODY = (b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
                 b'<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>'
                 b'</Error></Errors><RequestID>throttled</RequestID></Response>')


# What a captive portal or an outage page sends in place of AWS's answer: HTTP 200 with an
# HTML page. No recorded page stands behind these bytes (none is needed: any HTML breaks the
# XML and JSON parsers the same way); they are ours, and say so.
HTML_PAGE = (b"<!DOCTYPE html><html><head><title>Network login</title></head><body>"
             b"<p>Sign in to continue (dsinfra test page, not an AWS answer)</p></body></html>")


# Werkzeug's HTTP 500 page, byte for byte as moto 5.2's server (Werkzeug 3.1.9) sent it for an
# API it lacks (GetProducts, recorded 2026-12-05); the test lab's moto now answers those with
# a 501 at once (tests/moto_contracts.py), so tests that need a 5xx HTML page ask the proxy.
SERVER_ERROR_PAGE = (
    b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
    b"<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was "
    b"unable to complete your request. Either the server is overloaded or there is an error "
    b"in the application.</p>\n")


def scope_of(headers) -> tuple[str, str]:
    """(region, signing service) from the SigV4 credential scope of the Authorization header:
    ``Credential=<key>/<date>/<region>/<service>/aws4_request``."""
    auth = headers.get("Authorization") or ""
    if "Credential=" not in auth:
        return "", ""
    parts = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
    return (parts[2], parts[3]) if len(parts) >= 5 else ("", "")


def action_of(path: str, headers, body: bytes) -> str:
    target = headers.get("X-Amz-Target")
    if target:
        return target.split(".")[-1]
    for source in (body.decode(errors="replace"), urllib.parse.urlparse(path).query):
        params = urllib.parse.parse_qs(source)
        if "Action" in params:
            return params["Action"][0]
    return "other"


class FaultProxy:
    """``rules[action] = list of faults`` consumed in order: "throttle", "503", ("delay", s),
    "hang" (never answer; the request is not forwarded), "hang-after" (forward, never answer)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: dict[str, list] = {}
        # (region, signing service) pairs answered with HTML_PAGE (HTTP 200) every time:
        # e.g. ("us-west-2", "ec2"), ("us-west-2", "tagging")
        self.html: set[tuple[str, str]] = set()
        self.page, self.page_type = HTML_PAGE, "text/html"  # what those pairs are answered
        self.page_status = 200  # and with which HTTP status
        self.sent: Counter = Counter()  # actions forwarded to moto
        self.seen: Counter = Counter()  # every request, faulted or not
        self.upstream_s: Counter = Counter()  # seconds moto spent answering, per action
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = action_of(self.path, self.headers, body)
                proxy.seen[action] += 1
                if scope_of(self.headers) in proxy.html:
                    return self._reply(proxy.page_status, proxy.page,
                                       {"Content-Type": proxy.page_type})
                faults = proxy.rules.get(action) or []
                fault = faults.pop(0) if faults else None
                if fault == "throttle":
                    return self._reply(400, THROTTLE_BODY)
                if fault == "503":
                    return self._reply(503, b"<Response><Errors><Error><Code>Unavailable"
                                            b"</Code></Error></Errors></Response>")
                if fault == "hang":
                    time.sleep(3600)
                if isinstance(fault, tuple) and fault[0] == "delay":
                    time.sleep(fault[1])
                began = time.perf_counter()
                status, headers, payload = proxy._forward(self, body)
                proxy.upstream_s[action] += time.perf_counter() - began
                proxy.sent[action] += 1
                if fault == "hang-after":
                    time.sleep(3600)
                self._reply(status, payload, headers)

            def _reply(self, status, payload, headers=None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                         "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _forward(self, handler, body: bytes):
        request = urllib.request.Request(self.upstream + handler.path, data=body or None,
                                         method=handler.command,
                                         headers={k: v for k, v in handler.headers.items()
                                                  if k.lower() != "host"})
        try:
            with urllib.request.urlopen(request, timeout=600) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
