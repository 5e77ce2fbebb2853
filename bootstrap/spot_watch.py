#!/usr/bin/env python3
"""The spot interruption watcher that runs on each node of a spot stack (unit
``dsinfra-spot-watch``). Standard library only, run as ``python3 -I -S``, like the GPU probe:
it is copied to the node as one file.

Every ``--interval`` seconds (AWS recommends 5) it reads, through IMDSv2 (a token from
``PUT /latest/api/token``, then GETs with ``X-aws-ec2-metadata-token``):

- ``/latest/meta-data/spot/instance-action``: 404 while there is no notice; two minutes before
  EC2 stops or terminates the instance, ``{"action": "terminate", "time": "..."}``
  (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html);
- ``/latest/meta-data/events/recommendations/rebalance``: 404, or ``{"noticeTime": "..."}``
  when the instance is at elevated risk of interruption (rebalance-recommendations.html). It is
  an early warning only: logged once, nothing is stopped.

On an interruption notice it drains the engine: it refuses new connections to the API port
(iptables, only connections not yet established), waits until the established ones close or
the grace time runs out (the notice's time less a margin, at most ``--drain-s``), then stops
the engine's unit. Why not SIGTERM alone: the pinned vLLM (v0.11) cancels its server on SIGTERM
and aborts in-flight requests; only from vllm-project/vllm#34730 (2026) does
``--shutdown-timeout`` let it finish them. It prints one line per event, which systemd puts in
the journal, and writes the notice to ``--record`` for ``dsinfra`` to read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

IMDS = "http://169.254.169.254"
TOKEN_TTL_S = 21600
ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
MARGIN_S = 20  # kept back from the notice's time for the unit to stop
# What IMDS documents, and nothing else is acted on or cached: a token is one printable ASCII
# word (AWS's are ~56 base64 characters; 1 KiB bounds it); spot/instance-action is a JSON
# object {"action": "hibernate" | "stop" | "terminate", "time": "YYYY-MM-DDThh:mm:ssZ"};
# the rebalance recommendation is {"noticeTime": "YYYY-MM-DDThh:mm:ssZ"}.
MAX_TOKEN_CHARS = 1024
MAX_ANSWER_BYTES = 64 * 1024
ACTIONS = ("hibernate", "stop", "terminate")


class Imds:
    """IMDSv2: a session token, renewed before it expires or when IMDS answers 401."""

    def __init__(self, base: str = IMDS, timeout_s: float = 2.0) -> None:
        self.base, self.timeout_s = base, timeout_s
        self.token, self.token_until = "", 0.0

    def _token(self) -> str:
        if not self.token or time.monotonic() > self.token_until:
            request = urllib.request.Request(
                self.base + "/latest/api/token", method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)})
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                token = answer.read(MAX_TOKEN_CHARS + 1).decode("ascii", errors="replace")
            if not token_ok(token):  # never cached: the next poll asks again
                raise ValueError(f"IMDS answered a token that is not 1-{MAX_TOKEN_CHARS} "
                                 "printable ASCII characters")
            self.token = token
            self.token_until = time.monotonic() + TOKEN_TTL_S - 60
        return self.token

    def get(self, path: str) -> dict | None:
        """The JSON document at ``path``; None on 404 (no such notice)."""
        for _ in range(2):
            request = urllib.request.Request(
                self.base + path, headers={"X-aws-ec2-metadata-token": self._token()})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                    body = answer.read(MAX_ANSWER_BYTES + 1)
                if len(body) > MAX_ANSWER_BYTES:
                    raise ValueError(f"{path} answered more than {MAX_ANSWER_BYTES} bytes")
                document = json.loads(body.decode("utf-8"))
                if not isinstance(document, dict):
                    raise ValueError(f"{path} answered JSON that is not an object")
                return document
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code != 401:
                    raise
                self.token = ""  # expired or revoked: one new token, then give up
        raise RuntimeError(f"IMDS refused the token for {path} (401 twice)")


def token_ok(token: str) -> bool:
    return 1 <= len(token) <= MAX_TOKEN_CHARS and all(33 <= ord(ch) < 127 for ch in token)


def notice_problem(notice: dict) -> str | None:
    """None when ``notice`` is instance-action's documented shape."""
    if notice.get("action") not in ACTIONS:
        return f"action {str(notice.get('action'))[:40]!r} is not one of {', '.join(ACTIONS)}"
    if seconds_until(notice.get("time")) is None:
        return f"time {str(notice.get('time'))[:40]!r} is not YYYY-MM-DDThh:mm:ssZ"
    return None


def seconds_until(stamp: str, now: datetime | None = None) -> float | None:
    """Seconds from now to an IMDS time (``2015-01-05T18:02:00Z``); None if unreadable."""
    if not isinstance(stamp, str) or len(stamp) != 20 or not stamp.isascii():
        return None
    try:
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except (TypeError, ValueError, OverflowError):
        return None
    return (when - (now or datetime.now(timezone.utc))).total_seconds()


def run(argv: list[str], timeout_s: float = 120) -> int:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout_s).returncode
    except (OSError, subprocess.TimeoutExpired):
        return -1


def open_connections(port: int) -> int:
    """Established TCP connections to the engine's port (iproute2's ss)."""
    try:
        out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return len([line for line in out.splitlines() if line.strip()])


def drain(args: argparse.Namespace, notice: dict) -> dict:
    """Refuse new work, let in-flight requests finish within the grace time, stop the engine."""
    left_s = seconds_until(str(notice.get("time")))
    grace_s = max(0.0, min(args.drain_s, (left_s if left_s is not None else 120) - MARGIN_S))
    refused = run(["iptables", "-I", "INPUT", "-p", "tcp", "--dport", str(args.port), "-m",
                   "conntrack", "--ctstate", "NEW", "-j", "REJECT", "--reject-with",
                   "tcp-reset"]) == 0
    deadline = time.monotonic() + grace_s
    while open_connections(args.port) and time.monotonic() < deadline:
        time.sleep(0.5)
    still_open = open_connections(args.port)
    stopped = run(["systemctl", "stop", args.unit], timeout_s=max(grace_s, 30) + 60) == 0
    return {"new_connections_refused": refused, "grace_s": round(grace_s, 1),
            "requests_cut": still_open, "engine_stopped": stopped}


def record(path: str, document: dict) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            json.dump(document, handle)
    except OSError as exc:
        say(f"could not write {path}: {exc}")


def say(line: str) -> None:
    print(f"dsinfra-spot-watch: {line}", flush=True)


def watch(args: argparse.Namespace, imds: Imds) -> int:
    rebalance_seen = False
    while True:
        try:
            notice = imds.get(ACTION_PATH)
            if notice is not None and (problem := notice_problem(notice)):
                raise ValueError(f"{ACTION_PATH}: {problem}")
            if notice is None and not rebalance_seen:
                advice = imds.get(REBALANCE_PATH)
                if advice is not None:
                    if seconds_until(advice.get("noticeTime")) is None:
                        raise ValueError(f"{REBALANCE_PATH}: noticeTime is not "
                                         "YYYY-MM-DDThh:mm:ssZ")
                    rebalance_seen = True
                    say(f"rebalance recommendation at {advice['noticeTime']}: this spot "
                        "instance is at elevated risk of interruption; the engine keeps serving")
        except Exception as exc:  # noqa: BLE001 - never crash into a restart loop, say why
            say(f"IMDS unreadable ({type(exc).__name__}: {str(exc)[:200]!r}); retrying in "
                f"{args.interval:g}s")
            notice = None
        if notice is not None:
            result = drain(args, notice)
            say(f"spot interruption notice: {notice.get('action')} at {notice.get('time')}; "
                f"new connections refused={result['new_connections_refused']}, waited up to "
                f"{result['grace_s']:g}s, requests cut={result['requests_cut']}, engine "
                f"stopped={result['engine_stopped']}")
            record(args.record, {"notice": notice, **result,
                                 "seen_at": datetime.now(timezone.utc).strftime(
                                     "%Y-%m-%dT%H:%M:%SZ")})
            return 0
        if args.once:
            return 0
        time.sleep(args.interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="the engine's API port")
    parser.add_argument("--unit", default="dsinfra-engine.service")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--drain-s", type=float, default=90.0)
    parser.add_argument("--record", default="/opt/dsinfra/state/spot-interruption.json")
    parser.add_argument("--imds", default=IMDS)
    parser.add_argument("--once", action="store_true", help="one poll, then exit")
    args = parser.parse_args(argv)
    say(f"watching {args.imds} every {args.interval:g}s for spot interruption notices")
    return watch(args, Imds(args.imds))


if __name__ == "__main__":
    sys.exit(main())
