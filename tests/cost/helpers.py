"""Shared test helpers: run a check the way the CLI wires it, list what still bills."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dsinfra.ops.check import run_check
from dsinfra.cloud.inventory import fetch_inventory
from dsinfra.ops.local import local_context

REGIONS = ("us-east-1",)


def check(now: datetime, *, enforce: bool = False, stacks=None) -> dict[str, dict]:
    ctx = local_context(REGIONS, enforce=enforce, now=now, use_pulumi=False)
    try:
        return {s["stack"]: s for s in run_check(ctx, stacks)["stacks"]}
    finally:
        ctx.ledger.close()


def billable(stack: str) -> list[tuple[str, str]]:
    return [(r.kind, r.state) for r in fetch_inventory(REGIONS, [stack]).resources]


def instance_states(ids: list[str], region: str = "us-east-1") -> dict[str, str]:
    from dsinfra.cloud.aws import client

    pages = client("ec2", region).describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in pages for i in r["Instances"]}


class WebhookReceiver:
    """A Slack-compatible webhook endpoint on loopback that records what it was sent."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.messages.append(json.loads(body))
                outer.received(outer.messages[-1])
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000/secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self, message: dict) -> None:
        """Called as each message arrives, before it is answered (a subclass records more)."""

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
