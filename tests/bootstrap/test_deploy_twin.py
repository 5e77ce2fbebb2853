"""`dsinfra deploy` on the test twin (issue 27 item 3): the replicas' Auto Scaling group, target
group and launch template on moto; each replica a lab host that boots by running its launch
template's user data (replica_twin.py); a Network Load Balancer double on loopback in front
(nlb_double.py, AWS's contract beside it). A request loop of chat completions runs through the
double for the whole deploy and must see zero failed requests, in a deploy that completes, one
that rolls back (the new image's engine wedges), and one interrupted and resumed."""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from conftest import API_KEY
from hostlab import USER
from typer.testing import CliRunner

STACK, GROUP, MODEL = "svc", "svc-replicas", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
OLD_IMAGE, NEW_IMAGE = "vllm/vllm-openai:v0.11.0", "vllm/vllm-openai:v0.11.1"
WEDGED = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dsinfra/vllm-wedged:v1"
DRAIN_S = 2  # the target group's deregistration delay here (AWS's default is 300 s)
STACK_FILE = {"config": {"dsinfra:tier": "dev", "dsinfra:region": "us-east-1",
                         "dsinfra:instanceType": "g5.2xlarge", "dsinfra:replicas": 2,
                         "dsinfra:replicaImage": "ami-0123456789abcdef0",
                         "dsinfra:model": MODEL, "dsinfra:engine": "vllm",
                         "dsinfra:engineImage": OLD_IMAGE,
                         "dsinfra:budget": {"amountUsd": 1000}}}


class RequestLoop:
    """Chat completions through the load balancer, one new TCP connection each (so every
    request is routed anew), until stopped; every failure kept with its reason."""

    def __init__(self, address) -> None:
        self.address, self.ok, self.failures = address, 0, []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(3)]

    def __enter__(self) -> "RequestLoop":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _run(self) -> None:
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
        while not self._stop.is_set():
            try:
                conn = http.client.HTTPConnection(*self.address, timeout=30)
                conn.request("POST", "/v1/chat/completions", body=body,
                             headers={"Authorization": f"Bearer {API_KEY}",
                                      "Content-Type": "application/json",
                                      "Connection": "close"})
                answer = conn.getresponse()
                payload = answer.read()
                conn.close()
                if answer.status == 200 and json.loads(payload)["choices"]:
                    self.ok += 1
                else:
                    self.failures.append(f"HTTP {answer.status}: {payload[:200]!r}")
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self.failures.append(f"{type(exc).__name__}: {exc}")


class Webhook:
    """A notification receiver on loopback (DSINFRA_WEBHOOK_URL)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def twin(lab, hosts_aws, hosts_moto_url, tmp_path, monkeypatch):
    import boto3

    from dsinfra.cloud.aws import reset_session
    from dsinfra.config import parse_stack_config
    from dsinfra.ops import deploy as ops_deploy
    from dsinfra.outputs import StackOutputs
    from nlb_double import NlbDouble
    from replica_twin import ReplicaTwin

    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: dsinfra\nruntime: python\n")
    (project / "stacks" / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(STACK_FILE))
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(project))
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path / "state"))
    hook = Webhook()
    monkeypatch.setenv("DSINFRA_WEBHOOK_URL", hook.url)

    kw = dict(endpoint_url=hosts_moto_url, region_name="us-east-1",
              aws_access_key_id="testing", aws_secret_access_key="testing")
    ec2, asg, elb = (boto3.client(s, **kw) for s in ("ec2", "autoscaling", "elbv2"))
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24",
                               AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    tg = elb.create_target_group(
        Name="svc-api", Protocol="TCP", Port=8000, VpcId=vpc, TargetType="instance",
        HealthCheckProtocol="HTTP", HealthCheckPath="/health", HealthCheckIntervalSeconds=10,
        HealthyThresholdCount=3, UnhealthyThresholdCount=3)["TargetGroups"][0]["TargetGroupArn"]
    elb.modify_target_group_attributes(TargetGroupArn=tg, Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": str(DRAIN_S)}])
    # The group's first template: the stack's settings, rendered as a deploy renders them.
    config = parse_stack_config(STACK, {k.split(":", 1)[1]: v
                                        for k, v in STACK_FILE["config"].items()})
    import base64

    first = ops_deploy.engine_user_data("#!/bin/bash\n# the node pool's user data\n", config)
    lt = ec2.create_launch_template(LaunchTemplateName="svc-nodes", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "g5.2xlarge",
        "UserData": base64.b64encode(first.encode()).decode()})["LaunchTemplate"][
        "LaunchTemplateId"]
    asg.create_auto_scaling_group(
        AutoScalingGroupName=GROUP, LaunchTemplate={"LaunchTemplateId": lt, "Version": "$Latest"},
        MinSize=2, MaxSize=2, DesiredCapacity=2, VPCZoneIdentifier=subnet,
        TargetGroupARNs=[tg], HealthCheckType="ELB")

    double = NlbDouble(hosts_moto_url, tg, port=8000, health_path="/health",
                       deregistration_delay_s=DRAIN_S, interval_s=0.05).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2", double.api_url)
    reset_session()
    outputs = StackOutputs(nodes=[], bastion=None, endpoint=f"{double.address[0]}:"
                           f"{double.address[1]}", ssh_user=USER, region="us-east-1",
                           replica_group=GROUP, target_group_arn=tg, launch_template_id=lt)
    monkeypatch.setattr(ops_deploy, "stack_outputs", lambda stack: outputs)
    written = SettingsRecorder()
    monkeypatch.setattr(ops_deploy, "settings_engine", lambda: written)
    replicas = ReplicaTwin(lab, double, ec2, asg, GROUP, API_KEY,
                           wedged_images=(WEDGED,)).start()
    try:
        _wait(lambda: [double.state(i) for i in replicas.hosts] == ["healthy"] * 2,
              "the first two replicas to be healthy")
        yield {"double": double, "replicas": replicas, "asg": asg, "ec2": ec2, "lt": lt,
               "tg": tg, "hook": hook, "first": list(replicas.hosts), "state": tmp_path / "state",
               "written": written}
        assert replicas.errors == []  # every replica booted from its user data
    finally:
        replicas.stop()
        double.stop()
        for host in [*replicas.hosts.values(), *replicas.leaving.values()]:
            host.kill(lambda comm: comm not in ("sshd", "fakehostd"))


def _wait(condition, what: str, timeout_s: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _group(t) -> dict:
    return t["asg"].describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
        "AutoScalingGroups"][0]


def _user_data(t, version: str) -> str:
    import base64

    found = t["ec2"].describe_launch_template_versions(LaunchTemplateId=t["lt"],
                                                        Versions=[version])
    return base64.b64decode(found["LaunchTemplateVersions"][0]["LaunchTemplateData"][
        "UserData"]).decode()


def _audit(t) -> list[dict]:
    path = t["state"] / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _engine_log(host) -> str:
    path = host.state_dir / "engine.log"
    return path.read_text() if path.exists() else ""


def _deploy(*args: str, json_out: bool = True):
    from dsinfra.cli.main import app

    return CliRunner().invoke(app, ["deploy", STACK, *args, *(["--json"] if json_out else []),
                                    "--poll-s", "0.1"])


class SettingsRecorder:
    """The stack config as Pulumi's Automation API would be asked to write it."""

    def __init__(self) -> None:
        self.config: dict[str, object] = {}

    def set_config(self, stack: str, key: str, value: str) -> None:
        self.config[key] = value

    def replace_config_object(self, stack: str, key: str, entries: dict[str, str]) -> None:
        self.config[key] = dict(entries)


def test_deploy_replaces_every_replica_with_zero_failed_requests(twin):
    double, replicas = twin["double"], twin["replicas"]
    with RequestLoop(double.address) as loop:
        _wait(lambda: loop.ok >= 10, "requests through the first replicas")
        result = _deploy("--image", NEW_IMAGE, "--engine-arg", "--enable-prefix-caching",
                         "--health-timeout-s", "60")
        served_during = loop.ok
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        _wait(lambda: all(getattr(double.targets.get(i), "connections", 0) > 0
                          for i in summary["launched"]),
              "the new replicas to serve requests through the load balancer")
    assert summary["result"] == "done" and summary["image"] == NEW_IMAGE
    assert sorted(summary["replaced"]) == sorted(twin["first"])
    assert loop.failures == [], loop.failures[:5]
    assert double.no_target == 0
    print(f"requests during the deploy: {loop.ok} ok, {len(loop.failures)} failed")
    assert served_during >= 20  # the loop really ran through the deploy

    group = _group(twin)
    new = [i["InstanceId"] for i in group["Instances"]]
    assert sorted(new) == sorted(summary["launched"]) and not set(new) & set(twin["first"])
    assert group["DesiredCapacity"] == 2 and group["MaxSize"] == 2
    assert group["LaunchTemplate"]["Version"] == "$Latest"  # as infra/nodes.py makes it
    assert summary["to_version"] == "2" and NEW_IMAGE in _user_data(twin, "$Latest")
    # the stack file now says what the replicas run, so the next `up` renders the same
    engine = twin["written"].config.pop("dsinfra:engine")
    assert twin["written"].config == {"dsinfra:engineImage": NEW_IMAGE}
    assert engine["extraArgs[0]"] == "--enable-prefix-caching" and engine["name"] == "vllm"
    for iid in new:  # the rendered user data is what ran: the new image serves, new flag on
        log = _engine_log(replicas.hosts[iid])
        assert f"fake engine {NEW_IMAGE} serving {MODEL}" in log
        assert "--enable-prefix-caching" in replicas.user_data[iid]
    # one at a time: each old replica began draining only after its replacement was healthy.
    # The deploy's retire ends once the group lists the old instance as leaving (Terminating:
    # rollout.GONE_STATES; moto drops it at once), and AWS deregisters it from then on: the
    # twin does that on its next poll, which may come after the deploy has returned.
    _wait(lambda: all(any(i == old and s == "draining" for _, i, s in double.log)
                      for old in summary["replaced"]), "the twin to deregister the old replicas")
    log = double.log
    for old, fresh in zip(summary["replaced"], summary["launched"]):
        healthy_at = next(t for t, i, s in log if i == fresh and s == "healthy")
        draining_at = next(t for t, i, s in log if i == old and s == "draining")
        assert healthy_at < draining_at
    kinds = [r["kind"] for r in _audit(twin) if r.get("stack") == STACK]
    assert kinds[0] == "intent" and kinds[-2:] == ["result", "deploy.done"]
    assert kinds.count("deploy.launch") == kinds.count("deploy.healthy") == \
        kinds.count("deploy.retire") == 2
    assert not (twin["state"] / "deploys").exists() or \
        not list((twin["state"] / "deploys").iterdir())


def _timeout_when_the_double_reports_unhealthy(monkeypatch, double) -> None:
    """The deploy's health timeout runs out at a reported point instead of after 6 s of wall
    time: once the load balancer double has marked the new replica ``unhealthy`` (it booted,
    its engine answered its health checks with 503 ``UnhealthyThresholdCount`` times), the
    rollout's clock reads the timeout as elapsed. Until then it is the real clock, so a replica
    that is slow to boot is still waited for (at most the real 6 s)."""
    from dsinfra.ops import deploy as ops_deploy

    healthy = ops_deploy.Rollout.healthy

    def healthy_on_a_clock_the_double_ends(self, instance: str, index: int, total: int):
        real = self.clock
        self.clock = lambda: real() + (self.health_timeout_s
                                       if double.state(instance) == "unhealthy" else 0.0)
        try:
            return healthy(self, instance, index, total)
        finally:
            self.clock = real

    monkeypatch.setattr(ops_deploy.Rollout, "healthy", healthy_on_a_clock_the_double_ends)


def test_a_replica_that_never_gets_healthy_is_rolled_back_with_zero_failed_requests(
        twin, monkeypatch):
    import hashlib

    from dsinfra.cloud.aws import client

    client("ecr", "us-east-1").create_repository(repositoryName="dsinfra/vllm-wedged")
    client("ecr", "us-east-1").put_image(
        repositoryName="dsinfra/vllm-wedged", imageTag="v1",
        imageManifest=json.dumps({"schemaVersion": 2, "mediaType":
                                  "application/vnd.docker.distribution.manifest.v2+json",
                                  "config": {"digest": "sha256:" + hashlib.sha256(b"c")
                                             .hexdigest()}}))
    double, replicas = twin["double"], twin["replicas"]
    _timeout_when_the_double_reports_unhealthy(monkeypatch, double)
    with RequestLoop(double.address) as loop:
        _wait(lambda: loop.ok >= 10, "requests through the first replicas")
        result = _deploy("--image", WEDGED, "--health-timeout-s", "6")
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    assert summary["result"] == "rolled back" and "not healthy within 6 s" in summary["reason"]
    assert loop.failures == [], loop.failures[:5]
    print(f"requests during the rolled-back deploy: {loop.ok} ok, {len(loop.failures)} failed")
    (wedged,) = summary["launched"]
    assert not any(i == wedged and s == "healthy" for _, i, s in double.log)
    assert any(i == wedged and s == "unhealthy" for _, i, s in double.log)  # it was checked
    assert WEDGED in replicas.user_data[wedged]  # it did boot the new image's settings
    group = _group(twin)
    assert sorted(i["InstanceId"] for i in group["Instances"]) == sorted(twin["first"])
    assert group["LaunchTemplate"]["Version"] == "$Latest" and group["DesiredCapacity"] == 2
    assert _user_data(twin, "$Latest") == _user_data(twin, "1")  # the previous settings again
    assert group["MaxSize"] == 2
    records = _audit(twin)
    rollback = [r for r in records if r["kind"] == "deploy.rollback"]
    assert rollback and rollback[0]["instance"] == wedged
    assert rollback[0]["previous_version"] == "1" and rollback[0]["restored_version"] == "3"
    result_record = [r for r in records if r["kind"] == "result"][-1]
    assert result_record["result"] == "failed" and "rolled back" in result_record["reason"]
    assert summary["notice"] == "sent", summary["notice"]  # why, if the body is missing below
    assert any("rolled back" in body["text"] for body in twin["hook"].bodies), \
        twin["hook"].bodies
    assert twin["written"].config == {}  # a rolled-back deploy leaves the stack file alone


def _deploy_interrupted_at_first_launch(monkeypatch):
    """`deploy --image NEW_IMAGE` with Ctrl-C at a reported point: right after its first
    launch."""
    from dsinfra.ops import deploy as ops_deploy

    step = ops_deploy.Rollout.step

    def interrupt_at_first_launch(self, event: str, **fields) -> None:
        step(self, event, **fields)
        if event == "launch":  # a reported point: Ctrl-C arrives here
            raise KeyboardInterrupt

    monkeypatch.setattr(ops_deploy.Rollout, "step", interrupt_at_first_launch)
    try:
        return _deploy("--image", NEW_IMAGE, "--health-timeout-s", "60")
    finally:
        monkeypatch.setattr(ops_deploy.Rollout, "step", step)


def test_an_interrupted_deploy_keeps_serving_and_the_next_one_resumes(twin, monkeypatch):
    from dsinfra.ops.deploy import DeployState

    double = twin["double"]

    with RequestLoop(double.address) as loop:
        _wait(lambda: loop.ok >= 10, "requests through the first replicas")
        interrupted = _deploy_interrupted_at_first_launch(monkeypatch)
        assert interrupted.exit_code == 130, interrupted.output
        state = DeployState.load(STACK)
        assert state is not None and len(state.launched) == 1
        assert len(_group(twin)["Instances"]) == 3  # surged, nothing old removed
        result = _deploy("--image", NEW_IMAGE, "--health-timeout-s", "60", json_out=False)
    assert result.exit_code == 0, result.output
    assert loop.failures == [], loop.failures[:5]
    print(f"requests during the interrupted and resumed deploy: {loop.ok} ok")
    lines = result.stdout.splitlines()
    assert lines[0] == f"{STACK}: resuming the interrupted deploy: 2 replica(s) to replace"
    assert f"{STACK}: replica 1/2: adopting {state.launched[0]} from the interrupted run" \
        in lines  # adopted, not launched again
    assert lines[-1].startswith(f"{STACK}: done: 2 replica(s) on template version ")
    assert all(len(line) <= 80 for line in lines)
    group = _group(twin)
    assert len(group["Instances"]) == 2 and not {i["InstanceId"] for i in group["Instances"]} \
        & set(twin["first"])
    assert state.launched[0] in {i["InstanceId"] for i in group["Instances"]}
    kinds = [r["kind"] for r in _audit(twin)]
    assert "deploy.interrupted" in kinds and "deploy.resume" in kinds
    assert kinds.count("intent") == 1 and kinds.count("result") == 1


def test_a_deploy_with_other_settings_cleans_up_an_interrupted_one(twin, monkeypatch):
    from dsinfra.ops.deploy import DeployState

    double, replicas = twin["double"], twin["replicas"]
    newest = "vllm/vllm-openai:v0.11.2"
    # this group launches a pinned version: the deploy moves the pin
    twin["asg"].update_auto_scaling_group(AutoScalingGroupName=GROUP, LaunchTemplate={
        "LaunchTemplateId": twin["lt"], "Version": "1"})

    with RequestLoop(double.address) as loop:
        _wait(lambda: loop.ok >= 10, "requests through the first replicas")
        assert _deploy_interrupted_at_first_launch(monkeypatch).exit_code == 130
        (abandoned,) = DeployState.load(STACK).launched
        result = _deploy("--image", newest, "--health-timeout-s", "60")
        assert result.exit_code == 0, (result.output, replicas.errors)
        summary = json.loads(result.stdout)
        _wait(lambda: all(getattr(double.targets.get(i), "connections", 0) > 0
                          for i in summary["launched"]), "the new replicas to serve")
    assert loop.failures == [], loop.failures[:5]
    print(f"requests during the interrupted deploy and its clean-up: {loop.ok} ok")
    assert sorted(summary["replaced"]) == sorted(twin["first"])
    assert abandoned not in summary["launched"]
    group = _group(twin)
    assert sorted(i["InstanceId"] for i in group["Instances"]) == sorted(summary["launched"])
    assert group["DesiredCapacity"] == 2 and group["MaxSize"] == 2
    assert group["LaunchTemplate"]["Version"] == summary["to_version"] == "3"
    for iid in summary["launched"]:
        assert f"fake engine {newest} serving" in _engine_log(replicas.hosts[iid])
    records = _audit(twin)
    assert [r["instance"] for r in records if r["kind"] == "deploy.retire"
            and r["replica"] == 0] == [abandoned]
    assert any(r["kind"] == "deploy.cleanup" for r in records)
    results = [r for r in records if r["kind"] == "result"]
    assert len(results) == 1 and results[0]["result"] == "done"
