"""Idle autostop on an sshd test host: the ``idle-watch`` step installs the timer and its
service, and the service's own ExecStart command (what the timer would start each minute) runs
the watcher from the node kit on the host's python3. It reads a fake metrics endpoint inside
the host's network namespace (127.0.0.1, as on a node) that serves real /metrics text
(tests/fixtures/metrics/, see SOURCE.md), and calls the hosts' moto server for EC2, DynamoDB
(the guard's audit table) and SNS. The clock is driven with ``--now``, never with sleeps."""

from __future__ import annotations

import ast
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from conftest import host_entry, write_inventory

from dsinfra.bootstrap import idle_watch, nodekit
from dsinfra.bootstrap.engine import ENGINE_ENV
from dsinfra.bootstrap.engines import ENGINES
from dsinfra.bootstrap.hostkeys import KnownHosts, pins_from_text
from dsinfra.bootstrap.hosts import load_inventory
from dsinfra.bootstrap.plan import HostPlan
from dsinfra.bootstrap.remote import HostLog, SshSettings, close_quietly, open_connection
from dsinfra.bootstrap.secrets import Secrets

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "metrics"
STACK, OTHER = "idle-a", "idle-b"
API_KEY = "dsk-idle-7c1f0e9a2b3d4c5e6f708192a3b4c5d6"
PORT = 8000
T0 = 1_800_000_000.0  # the watcher's clock, in epoch seconds
SERVER = r'''
import http.server, sys
port, body_path, seen_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(seen_path, "a") as seen:
            seen.write(repr((self.path, self.headers.get("Authorization"))) + "\n")
        body = open(body_path, "rb").read()
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Metrics)
open(sys.argv[4], "w").close()  # listening: the test may go on
server.serve_forever()
'''


class MetricsEndpoint:
    """A server on 127.0.0.1:PORT inside the host's network namespace, serving whichever
    fixture ``serve`` names; ``stop`` takes it away (the engine died)."""

    def __init__(self, host, tmp_path: Path) -> None:
        self.host, self.dir = host, tmp_path
        self.body, self.seen = tmp_path / "body.prom", tmp_path / "seen.log"
        (tmp_path / "server.py").write_text(SERVER)
        self.process = None

    def serve(self, fixture: str) -> None:
        self.serve_text((FIXTURES / fixture).read_text())

    def serve_text(self, text: str) -> None:
        self.body.write_text(text)
        if self.process is None:
            ready = self.dir / "listening"
            ready.unlink(missing_ok=True)
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.host.netns, sys.executable, "-S",
                 str(self.dir / "server.py"), str(PORT), str(self.body), str(self.seen),
                 str(ready)])
            deadline = time.monotonic() + 30
            while not ready.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert ready.exists(), "the fake metrics endpoint did not start"

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def requests(self) -> list[tuple[str, str | None]]:
        return [ast.literal_eval(line) for line in self.seen.read_text().splitlines()]


@pytest.fixture(scope="module")
def baked_kit(tmp_path_factory):
    """Where the unpacked node kit is kept once a test has installed it: each later test's
    fresh host gets it as a baked image carries it (``kit_ready`` still checks its version),
    instead of a 3 MB upload and unpack per test. The install itself is tested by
    test_nodekit.py and every modelCache bootstrap (test_model_weights.py)."""
    return tmp_path_factory.mktemp("idle-kit") / "kit"


@pytest.fixture
def idle_host(lab, tmp_path, baked_kit):
    host = lab.fresh("idle", "g5.2xlarge")
    kit = host.root / "fs" / nodekit.KIT_DIR.lstrip("/")
    if baked_kit.exists():
        shutil.copytree(baked_kit, kit, symlinks=True)
    _, (spec,) = load_inventory(write_inventory(tmp_path / "hosts.yaml",
                                                [host_entry(lab, host)]))
    known = KnownHosts(record_path=tmp_path / "known_hosts", trust_on_first_use=False)
    known.pins[spec.id] = pins_from_text(host.host_key_line())
    secrets = Secrets(api_key=API_KEY)
    conn = open_connection(spec, known, HostLog(None, secrets), secrets,
                           SshSettings(connect_timeout_s=5))
    endpoint = MetricsEndpoint(host, tmp_path)
    yield host, conn, spec, endpoint
    endpoint.stop()
    close_quietly(conn)
    if not baked_kit.exists() and (kit / "VERSION").exists():
        shutil.copytree(kit, baked_kit, symlinks=True)


@pytest.fixture
def aws(hosts_aws):
    """This stack's two instances and another stack's one, the guard's table and an SNS topic
    whose messages land in an SQS queue the test reads."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    image = "ami-12c6146b"  # one of moto's built-in AMIs, as tests/cost uses

    def launch(stack: str, count: int) -> list[str]:
        made = ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count,
                                 InstanceType="g5.2xlarge", TagSpecifications=[{
                                     "ResourceType": "instance",
                                     "Tags": [{"Key": "dsinfra:stack", "Value": stack},
                                              {"Key": "dsinfra:protect", "Value": "false"}]}])
        return sorted(i["InstanceId"] for i in made["Instances"])

    ddb = boto3.client("dynamodb", region_name="us-east-1")
    table = "dsinfra-state-9f3a2c1"
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}])
    sns, sqs = boto3.client("sns", region_name="us-east-1"), boto3.client("sqs", "us-east-1")
    topic = sns.create_topic(Name="idle-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="idle-alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return {"ec2": ec2, "ddb": ddb, "sqs": sqs, "queue": queue, "table": table, "topic": topic,
            "mine": launch(STACK, 2), "other": launch(OTHER, 1), "node_aws": hosts_aws}


def _states(ec2, ids: list[str]) -> set[str]:
    found = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["State"]["Name"] for r in found for i in r["Instances"]}


def _notices(aws) -> list[str]:
    got = aws["sqs"].receive_message(QueueUrl=aws["queue"], MaxNumberOfMessages=10,
                                     WaitTimeSeconds=0).get("Messages", [])
    return [json.loads(m["Body"])["Subject"] for m in got]


def _audit(aws) -> list[dict]:
    items = aws["ddb"].scan(TableName=aws["table"])["Items"]
    return [json.loads(i["record"]["S"]) for i in items if i["pk"]["S"].startswith("audit#")]


def _install(conn, spec, aws, engine: str = "vllm") -> HostPlan:
    watch = idle_watch.IdleWatch(stack=STACK, region="us-east-1", idle_minutes=10, port=PORT,
                                 metrics=ENGINES[engine].metrics, audit_table=aws["table"],
                                 audit_region="us-east-1", sns_topic_arn=aws["topic"])
    plan = HostPlan(host=spec, engine=None, secrets=Secrets(api_key=API_KEY), region="us-east-1",
                    node_kit=True, node_aws=aws["node_aws"], idle_watch=watch)
    if not nodekit.kit_ready(conn, plan):
        nodekit.install_kit(conn, plan)
    conn.put_file(f"DSINFRA_API_KEY={API_KEY}\n", ENGINE_ENV, mode="0600")
    assert idle_watch.watch_ready(conn, plan) is False
    idle_watch.install_watch(conn, plan)
    assert idle_watch.watch_ready(conn, plan) is True
    return plan


def _tick(conn, at_s: float):
    """What the timer does each minute: the service's ExecStart, as root, at ``at_s``."""
    unit = conn.out(f"cat {idle_watch.SERVICE_PATH}")
    command = next(line.split("=", 1)[1] for line in unit.splitlines()
                   if line.startswith("ExecStart="))
    return conn.sh(f"{command} --now {at_s!r}", root=True, warn=True)


def test_the_step_installs_a_timer_every_minute_and_a_root_only_config(idle_host, aws):
    host, conn, spec, _ = idle_host
    _install(conn, spec, aws)
    timer = conn.out(f"cat {idle_watch.TIMER_PATH}")
    assert "OnUnitActiveSec=1min" in timer and "WantedBy=timers.target" in timer
    service = conn.out(f"cat {idle_watch.SERVICE_PATH}")
    assert "Type=oneshot" in service and \
        f"ExecStart=/usr/bin/python3 -s {nodekit.KIT_DIR}/run.py dsinfra.cloud.idle_watch " \
        f"--config {idle_watch.CONFIG}" in service
    assert host.state()["units"][idle_watch.TIMER]["enabled"] is True
    assert not conn.ok(f"cat {idle_watch.CONFIG}")  # the login user cannot read it
    config = json.loads(conn.out(f"cat {idle_watch.CONFIG}", root=True))
    assert config["metrics_url"] == f"http://127.0.0.1:{PORT}/metrics"
    assert config["metrics"]["counters"] == ["vllm:request_success_total"]


def test_an_idle_stack_is_stopped_after_its_minutes_and_only_its_own_instances(idle_host,
                                                                                aws):
    _, conn, spec, endpoint = idle_host
    _install(conn, spec, aws)
    endpoint.serve("vllm_idle.prom")
    first = _tick(conn, T0)  # the clock starts: no state yet
    assert first.exited == 0 and "idle: no request for 0.0 min of 10 min" in first.stdout
    almost = _tick(conn, T0 + 9 * 60)
    assert almost.exited == 0 and _states(aws["ec2"], aws["mine"]) == {"running"}
    done = _tick(conn, T0 + 10 * 60 + 5)
    assert done.exited == 0, done.stdout + done.stderr
    assert _states(aws["ec2"], aws["mine"]) <= {"stopping", "stopped"}
    assert _states(aws["ec2"], aws["other"]) == {"running"}
    (record,) = _audit(aws)
    assert record["kind"] == "idle-stop" and record["stack"] == STACK
    assert sorted(record["instances"]) == aws["mine"] and "10.1 min" in record["reason"]
    assert _notices(aws) == [f"dsinfra: stack {STACK} stopped after 10 idle min"]
    # The watcher asked as a client of the engine would, with the stack's API key.
    assert set(endpoint.requests()) == {("/metrics", f"Bearer {API_KEY}")}


def test_one_time_spot_is_terminated_after_its_own_notice_the_rest_stopped(idle_host, aws):
    """Issue 23 item 5, on the node: AWS refuses StopInstances on one-time spot (the hosts'
    moto too, tests/moto_contracts.py), so the watcher from the node kit notifies, records
    and terminates it (cancelling its request) and stops the stack's other instances."""
    _, conn, spec, endpoint = idle_host
    _install(conn, spec, aws)
    made = aws["ec2"].run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="g5.2xlarge",
        InstanceMarketOptions={"MarketType": "spot"}, TagSpecifications=[{
            "ResourceType": "instance", "Tags": [{"Key": "dsinfra:stack", "Value": STACK}]}])
    spot = made["Instances"][0]["InstanceId"]
    endpoint.serve("vllm_idle.prom")
    assert _tick(conn, T0).exited == 0
    done = _tick(conn, T0 + 10 * 60 + 5)
    assert done.exited == 0, done.stdout + done.stderr
    assert _states(aws["ec2"], [spot]) <= {"shutting-down", "terminated"}
    assert _states(aws["ec2"], aws["mine"]) <= {"stopping", "stopped"}
    assert _states(aws["ec2"], aws["other"]) == {"running"}
    (request,) = aws["ec2"].describe_spot_instance_requests(Filters=[
        {"Name": "instance-id", "Values": [spot]}])["SpotInstanceRequests"]
    assert request["State"] == "cancelled"
    records = {r["kind"]: r for r in _audit(aws)}
    assert sorted(records["idle-stop"]["instances"]) == aws["mine"]
    assert records["terminate-notice"]["instances"] == [spot]
    assert "one-time spot request" in records["terminate-notice"]["why"][0]
    assert sorted(_notices(aws)) == sorted([
        f"dsinfra: stack {STACK} stopped after 10 idle min",
        f"dsinfra: stack {STACK}: terminating {spot} (AWS cannot stop it)"])


def test_a_protected_stack_is_notified_never_stopped(idle_host, aws):
    """As the budget guard treats it (dsinfra.budget.exceeded_action): notify only."""
    _, conn, spec, endpoint = idle_host
    _install(conn, spec, aws)
    aws["ec2"].create_tags(Resources=aws["mine"][:1],
                           Tags=[{"Key": "dsinfra:protect", "Value": "true"}])
    endpoint.serve("vllm_idle.prom")
    assert _tick(conn, T0).exited == 0
    tick = _tick(conn, T0 + 15 * 60)
    assert tick.exited == 0, tick.stdout + tick.stderr
    assert _states(aws["ec2"], aws["mine"]) == {"running"}
    (record,) = _audit(aws)
    assert record["kind"] == "idle-notify" and record["result"] == "protected stack: not stopped"
    assert _notices(aws) == [f"dsinfra: stack {STACK} is idle (protected, not stopped)"]


def test_a_busy_stack_is_never_stopped(idle_host, aws):
    _, conn, spec, endpoint = idle_host
    _install(conn, spec, aws)
    endpoint.serve("vllm_idle.prom")
    assert _tick(conn, T0).exited == 0
    # Nothing running now, but requests finished since the last reading: busy.
    endpoint.serve("vllm_counter_moved.prom")
    moved = _tick(conn, T0 + 11 * 60)
    assert moved.exited == 0 and "busy: 0 running, 0 waiting, counter moved to 3918" \
        in moved.stdout
    endpoint.serve("vllm_counter_moved.prom")
    later = _tick(conn, T0 + 20 * 60)  # 9 idle minutes since that activity
    assert "no request for 9.0 min of 10 min" in later.stdout
    assert _states(aws["ec2"], aws["mine"]) == {"running"}
    assert _audit(aws) == [] and _notices(aws) == []


def test_a_busy_sglang_engine_is_never_stopped(idle_host, aws):
    _, conn, spec, endpoint = idle_host
    _install(conn, spec, aws, engine="sglang")
    endpoint.serve("sglang_busy.prom")
    for minute in (0, 11, 30):
        tick = _tick(conn, T0 + minute * 60)
        assert tick.exited == 0 and "busy: 162 running, 2826 waiting" in tick.stdout
    assert _states(aws["ec2"], aws["mine"]) == {"running"}


def test_unreadable_metrics_stop_nothing_and_say_so_loudly_once(idle_host, aws):
    _, conn, spec, endpoint = idle_host
    _install(conn, spec, aws)
    endpoint.serve("vllm_idle.prom")
    assert _tick(conn, T0).exited == 0
    endpoint.stop()  # the engine died on its GPU
    dead = _tick(conn, T0 + 30 * 60)
    assert dead.exited == 3 and "WARNING metrics unreadable" in dead.stderr
    assert "unreachable" in dead.stderr and "not stopping" in dead.stderr
    assert _notices(aws) == [f"dsinfra: stack {STACK}: idle watch cannot read the engine"]
    # The real text with the running gauge cut out: parsed, but not trusted.
    endpoint.serve_text("".join(line for line in (FIXTURES / "vllm_idle.prom").read_text()
                                .splitlines(keepends=True)
                                if "num_requests_running" not in line))
    missing = _tick(conn, T0 + 45 * 60)
    assert missing.exited == 3 and "has no vllm:num_requests_running" in missing.stderr
    assert _notices(aws) == []  # once, until the metrics read again
    assert _states(aws["ec2"], aws["mine"]) == {"running"}
    # Good again: the clock restarted at the last bad reading, so no stop on old idle time.
    endpoint.serve("vllm_idle.prom")
    back = _tick(conn, T0 + 46 * 60)
    assert back.exited == 0 and "no request for 1.0 min of 10 min" in back.stdout
    assert _states(aws["ec2"], aws["mine"]) == {"running"} and _audit(aws) == []


def test_a_new_boot_starts_the_clock_afresh(idle_host, aws):
    """`dsinfra start` after an idle stop boots the node: the state of the last boot must not
    stop it again a minute later."""
    _, conn, spec, endpoint = idle_host
    _install(conn, spec, aws)
    endpoint.serve("vllm_idle.prom")
    assert _tick(conn, T0).exited == 0
    state = json.loads(conn.out(f"cat {idle_watch.STATE}", root=True))
    assert conn.out(f"stat -c %a {idle_watch.STATE}", root=True) == "600"
    state["boot_id"] = "the-boot-before-the-stop"
    conn.put_file(json.dumps(state), idle_watch.STATE, mode="0600")
    after = _tick(conn, T0 + 60 * 60)
    assert "no request for 0.0 min of 10 min" in after.stdout
    assert _states(aws["ec2"], aws["mine"]) == {"running"}


def test_turning_idle_autostop_off_removes_the_timer(idle_host, aws):
    host, conn, spec, _ = idle_host
    plan = _install(conn, spec, aws)
    plan.idle_watch = None
    assert idle_watch.watch_ready(conn, plan) is False
    idle_watch.install_watch(conn, plan)
    assert idle_watch.watch_ready(conn, plan) is True
    assert not conn.ok(f"test -e {idle_watch.SERVICE_PATH}", root=True)
    assert host.state()["units"][idle_watch.TIMER]["enabled"] is False


def test_the_unit_carries_no_unvalidated_value():
    bad = idle_watch.IdleWatch(stack="x\nExecStart=/bin/sh", region="us-east-1",
                               idle_minutes=10, port=PORT, metrics=ENGINES["vllm"].metrics)
    with pytest.raises(Exception, match="invalid stack"):
        idle_watch.watcher_config(bad)
    assert shlex.split(idle_watch.exec_start())[0] == "/usr/bin/python3"


def test_a_replicas_stack_watches_every_replica_and_publishes_even_with_idle_off():
    from dsinfra.config import parse_stack_config

    def stack(**values):
        return parse_stack_config("svc", {"tier": "prod", "budget": {"amountUsd": 500},
                                          "idleMinutes": "off", **values})

    assert idle_watch.idle_watch_for(stack()) is None  # no replicas, idle off: no watcher
    watch = idle_watch.idle_watch_for(stack(replicas={"min": 1, "max": 3}))
    assert watch is not None and watch.replicas and watch.idle_minutes is None
    config = json.loads(idle_watch.watcher_config(watch))
    assert config["publish"] is True and config["replicas"] is True
    assert config["idle_minutes"] is None
    assert "publish stack svc's request counts" in idle_watch.service_unit(watch)
    # without replicas an off watcher is refused before anything is rendered
    bad = idle_watch.IdleWatch(stack="svc", region="us-east-1", idle_minutes=None, port=PORT,
                               metrics=ENGINES["vllm"].metrics)
    with pytest.raises(Exception, match="invalid idle minutes"):
        idle_watch.watcher_config(bad)


def test_a_replica_publishes_its_counts_to_cloudwatch_from_the_node_kit(idle_host, aws):
    """The node kit's own boto3 and botocore models (cloudwatch among NODE_SERVICES) on the
    host's python3: what a replica of a replicas stack does every minute (issue 27)."""
    from datetime import datetime, timedelta, timezone

    from dsinfra.cloud.replicas import read_loads

    _, conn, spec, endpoint = idle_host
    watch = idle_watch.IdleWatch(stack=STACK, region="us-east-1", idle_minutes=None, port=PORT,
                                 metrics=ENGINES["vllm"].metrics, replicas=True)
    plan = HostPlan(host=spec, engine=None, secrets=Secrets(api_key=API_KEY), region="us-east-1",
                    node_kit=True, node_aws=aws["node_aws"], idle_watch=watch)
    if not nodekit.kit_ready(conn, plan):
        nodekit.install_kit(conn, plan)
    conn.put_file(f"DSINFRA_API_KEY={API_KEY}\n", ENGINE_ENV, mode="0600")
    idle_watch.install_watch(conn, plan)
    endpoint.serve("vllm_idle.prom")
    mine, now = aws["mine"][0], time.time()
    unit = conn.out(f"cat {idle_watch.SERVICE_PATH}")
    command = next(line.split("=", 1)[1] for line in unit.splitlines()
                   if line.startswith("ExecStart="))
    ran = conn.sh(f"{command} --now {now!r} --instance-id {mine}", root=True, warn=True)
    assert ran.exited == 0, ran.stdout + ran.stderr
    assert "published 0 running, 0 waiting" in ran.stdout
    loads, error = read_loads("us-east-1", STACK, [mine, aws["mine"][1]],
                              datetime.fromtimestamp(now, timezone.utc) + timedelta(seconds=1))
    assert error == "" and loads[aws["mine"][1]] is None
    assert (loads[mine].running, loads[mine].waiting) == (0, 0)
    assert _states(aws["ec2"], aws["mine"]) == {"running"}  # idle off: nothing stopped
