"""The node side of autoscaling (issue 27 item 2) on the moto server: each replica's watcher
(cloud/idle_watch.py, the module the node kit runs every minute) reads its engine's /metrics
(real text, tests/fixtures/metrics/, served on loopback as the engine serves it on a node),
publishes the running and waiting counts to CloudWatch for the scaler, publishes nothing when
the engine cannot be read, and on a replicas stack stops the stack only when every replica is
idle, through the one stop path, which holds the group first. The clock is driven with
``now_s``, never with sleeps; the instance id is given as ``--instance-id`` gives it."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dsinfra.cloud import idle_watch
from dsinfra.cloud import replicas as R
from dsinfra.engines import ENGINE_SPECS

from .helpers import instance_states
from .test_autoscale import REGION, aws_health_checks, group, make_replicas, members, publish

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "metrics"


class Engine:
    """/metrics on loopback, serving a fixture; ``status`` other than 200 is a sick engine."""

    def __init__(self, fixture: str) -> None:
        self.body, self.status = (FIXTURES / fixture).read_bytes(), 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(outer.status if self.path == "/metrics" else 404)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def engine():
    served = Engine("vllm_idle.prom")
    yield served
    served.close()


def watcher(tmp_path: Path, engine: Engine, stack: str, idle_minutes: int | None) -> str:
    names = ENGINE_SPECS["vllm"].metrics
    path = tmp_path / "idle-watch.json"
    path.write_text(json.dumps({
        "stack": stack, "region": REGION, "idle_minutes": idle_minutes,
        "metrics_url": engine.url,
        "metrics": {"running": list(names.running), "waiting": list(names.waiting),
                    "counters": list(names.counters)},
        "api_key_env_file": None, "state_path": str(tmp_path / "state.json"),
        "audit_table": None, "audit_region": None, "sns_topic_arn": None,
        "publish": True, "replicas": True}))
    return str(path)


def loads(stack: str, ids: list[str], now_s: float):
    return R.read_loads(REGION, stack, ids, datetime.fromtimestamp(now_s, timezone.utc))[0]


def test_each_replica_publishes_its_engines_counts(aws, tmp_path, engine):
    name = make_replicas("svc", desired=2)
    mine, other = members(name)
    now = time.time()
    assert idle_watch.run(watcher(tmp_path, engine, "svc", None), now, mine) == 0
    found = loads("svc", [mine, other], now)
    assert found[mine] is not None and (found[mine].running, found[mine].waiting) == (0, 0)
    assert found[other] is None  # it published nothing: missing, never read as idle


def test_an_unreadable_engine_publishes_nothing_and_says_so(aws, tmp_path, engine, capsys):
    name = make_replicas("svc")
    (mine,) = members(name)
    engine.status = 503
    now = time.time()
    assert idle_watch.run(watcher(tmp_path, engine, "svc", None), now, mine) == 3
    assert loads("svc", [mine], now)[mine] is None
    assert "nothing published" in capsys.readouterr().err


def test_one_idle_replica_does_not_stop_the_stack_all_idle_ones_do(aws, tmp_path, engine):
    name = make_replicas("svc", desired=2)
    mine, other = members(name)
    config = watcher(tmp_path, engine, "svc", idle_minutes=10)
    t0 = time.time()
    assert idle_watch.run(config, t0, mine) == 0  # the clock starts

    busy_at = t0 + 11 * 60
    publish("svc", {other: (2, 0)}, datetime.fromtimestamp(busy_at, timezone.utc))
    assert idle_watch.run(config, busy_at, mine) == 0
    assert instance_states([mine, other]) == {mine: "running", other: "running"}
    assert "Launch" not in {p["ProcessName"] for p in group(name)["SuspendedProcesses"]}

    idle_at = t0 + 12 * 60
    publish("svc", {other: (0, 0)}, datetime.fromtimestamp(idle_at, timezone.utc))
    assert idle_watch.run(config, idle_at, mine) == 0
    assert instance_states([mine, other]) == {mine: "stopped", other: "stopped"}
    assert set(R.HOLD_PROCESSES) <= {p["ProcessName"] for p in group(name)["SuspendedProcesses"]}
    aws_health_checks()
    assert members(name) == sorted([mine, other])  # nothing replaced
