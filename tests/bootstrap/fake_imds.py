"""A fake EC2 instance metadata service, IMDSv2 only, for the spot watcher's tests. It listens
on the REAL address 169.254.169.254:80 inside one test host's network namespace (the address
is added to that namespace's lo), so the watcher runs unchanged.

SOURCE, AWS EC2 User Guide:
- IMDSv2: a token from ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds``,
  then ``X-aws-ec2-metadata-token`` on each GET; with IMDSv2 required, a GET without a valid
  token gets ``401 - Unauthorized`` (configuring-instance-metadata-service.html,
  instancedata-data-retrieval.html).
- ``/latest/meta-data/spot/instance-action``: absent (404) until a notice, then e.g.
  ``{"action": "terminate", "time": "2017-09-18T08:22:00Z"}``
  (spot-instance-termination-notices.html). The tests keep this document and set ``time`` two
  minutes ahead, as a real notice would be.
- ``/latest/meta-data/events/recommendations/rebalance``: 404, or ``{"noticeTime":
  "2020-10-27T08:22:00Z"}`` (rebalance-recommendations.html).

Run as ``python3 fake_imds.py STATE_FILE``; STATE_FILE is JSON ``{"instance-action": {...} |
null, "rebalance": {...} | null}``, read on each request so a test can post a notice; every
request is appended to STATE_FILE + ".log" as ``METHOD PATH token=yes|no STATUS``.
"""

import json
import secrets
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATHS = {"/latest/meta-data/spot/instance-action": "instance-action",
         "/latest/meta-data/events/recommendations/rebalance": "rebalance"}
TOKENS = set()


class Handler(BaseHTTPRequestHandler):
    state_file = ""

    def log_message(self, fmt, *args):
        pass

    def _answer(self, status, body=b"", content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        token = "yes" if self.headers.get("X-aws-ec2-metadata-token") else "no"
        with open(self.state_file + ".log", "a") as log:
            log.write(f"{self.command} {self.path} token={token} {status}\n")

    def do_PUT(self):
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if self.path != "/latest/api/token" or not ttl.isdigit() or \
                not 1 <= int(ttl) <= 21600:
            return self._answer(400)
        token = secrets.token_urlsafe(32)
        TOKENS.add(token)
        return self._answer(200, token.encode())

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") not in TOKENS:
            return self._answer(401)
        with open(self.state_file) as handle:
            state = json.load(handle)
        document = state.get(PATHS.get(self.path, ""))
        if document is None:
            return self._answer(404)
        return self._answer(200, json.dumps(document).encode(), "application/json")


if __name__ == "__main__":
    Handler.state_file = sys.argv[1]
    address = sys.argv[2] if len(sys.argv) > 2 else "169.254.169.254"
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 80
    server = ThreadingHTTPServer((address, port), Handler)
    print("ready", flush=True)
    server.serve_forever()
