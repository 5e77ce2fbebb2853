"""Twin tests: `dsinfra up` on each shipped tier (stacks/Pulumi.<tier>.yaml, one per TIERS row)
reaches a healthy endpoint, with

- the Pulumi engine faked at the Automation API seam: `up` answers with the outputs of the real
  program run offline under Pulumi's mocks (infra/offline.py), node addresses swapped for the
  test hosts';
- AWS on the moto server (the doctor; Stubber for Service Quotas and the DLAMI parameter, which
  moto does not serve, see tests/lifecycle/fakes.py);
- the hosts on sshd, each configured from the offline plan's own resources: the instance's
  type, the EFA interfaces in the launch template, the image (DLAMI or not), never from the
  catalog, and answering from the recorded outputs of that type (tests/fixtures/hosts).

This is the test that would have caught prod stopping at `efa` (p4d launched without EFA
interfaces) and at `gpu-probe` (A100's Fabric State N/A)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hostlab import USER

from dsinfra.catalog import INSTANCE_SPECS
from dsinfra.config import parse_stack_config
from dsinfra.ops.up import UpOptions, UpPorts, bring_up
from dsinfra.infra.nodes import DLAMI_SSM_PARAMETER, ROLE_TAG
from dsinfra.infra.offline import mocked_ami, run_offline
from dsinfra.stackfiles import read_stack_values, stack_file
from dsinfra.tiers import TIERS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lifecycle.fakes import StubbedFactory  # noqa: E402

PROJECT_DIR = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
OFFICE = "203.0.113.0/24"
NCCL_OFI_LOG = PROJECT_DIR / "tests" / "fixtures" / "nccl" / "ofi-efa-libfabric.log"


@dataclass(frozen=True)
class PlannedNode:
    role: str
    instance_type: str
    efa_interfaces: int
    dlami: bool


def planned_nodes(run, region: str) -> list[PlannedNode]:
    """What the offline plan launches: the node instances and their launch template."""
    template = run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert len(template) == 1, "one launch template for the node pool"
    inputs = template[0].inputs
    efa = sum(1 for i in inputs.get("networkInterfaces") or []
              if i.get("interfaceType") in ("efa", "efa-only"))
    dlami = inputs["imageId"] == mocked_ami(region, DLAMI_SSM_PARAMETER)
    nodes = [r for r in run.of_type("aws:ec2/instance:Instance")
             if (r.inputs.get("tags") or {}).get(ROLE_TAG) in ("head", "worker")]
    return [PlannedNode(r.inputs["tags"][ROLE_TAG], r.inputs["instanceType"], efa, dlami)
            for r in sorted(nodes, key=lambda r: r.name)]


class TwinEngine:
    """The Automation API seam: the real program's planned outputs, on the test hosts."""

    def __init__(self, outputs: dict, hosts, bastion, port: int) -> None:
        self.planned, self.hosts, self.bastion, self.port = outputs, hosts, bastion, port
        self.calls: list[tuple] = []
        self.deployed = False

    def preview(self, stack, on_event=None):
        raise AssertionError("up does not preview")

    def set_config(self, stack, key, value):
        self.calls.append(("set_config", key, value))

    def up(self, stack, on_event=None):
        self.calls.append(("up", stack))
        self.deployed = True
        return self.outputs(stack)

    def outputs(self, stack):
        if not self.deployed:
            return {}
        nodes = [{**node, "private_ip": host.listen,
                  "public_ip": host.listen if node.get("public_ip") else None}
                 for node, host in zip(self.planned["nodes"], self.hosts)]
        # The load balancer is AWS's: here the head's own port stands in for it.
        return {**self.planned, "nodes": nodes, "ssh_user": USER,
                "bastion": self.bastion.address if self.bastion else None,
                "endpoint": f"http://{self.hosts[0].listen}:{self.port}"}

    def destroy(self, stack, on_event=None):
        self.deployed = False


def _probe_from(bastion):
    """GET from where the load balancer sits: the public side (the bastion's network) for the
    private tiers, this machine for dev."""
    def probe(url: str, timeout_s: float) -> bool:
        prefix = ["ip", "netns", "exec", bastion.netns] if bastion else []
        code = ("import sys, urllib.request as u; "
                "sys.exit(0 if u.urlopen(sys.argv[1], timeout=float(sys.argv[2])).status == 200 "
                "else 1)")
        return subprocess.run([*prefix, sys.executable, "-c", code, url, str(timeout_s)],
                              capture_output=True).returncode == 0
    return probe


def instance_connect(outputs, hosts, pushed: list):
    """EC2 Instance Connect for the twin: SendSSHPublicKey goes to AWS's API (moto, server
    mode, which answers Success and keeps nothing), and the instance's side of it, the key in
    its metadata for 60 s, is the test host's (hostlab.TestHost.push_key, read by sshd's
    AuthorizedKeysCommand, eic_agent.py). Instance ids map to the hosts at their private addresses."""
    from dsinfra.cloud.eice import key_pusher

    send = key_pusher(outputs.region)
    by_id = {n.id: h for n in outputs.nodes for h in hosts if h.listen == n.private_ip}

    def push(instance_id: str, user: str, public_key: str) -> None:
        send(instance_id, user, public_key)
        pushed.append((instance_id, user))
        by_id[instance_id].push_key(user, public_key)

    return push


def _up_on_twin(config, run, hosts, bastion, lab, tmp_path, options, hosts_moto_url,
                **ports):
    """`up` of ``config`` against the twin: the offline program's outputs (``run``) with the
    test hosts behind a local EC2 Instance Connect Endpoint (eice_server.py, signatures checked
    against moto's test credentials), bootstrapped for real. The account's ECR, where the
    private and EFA tiers take the engine image from (TierSpec.image_from_ecr): the hosts' AWS
    is moto on the lab's service address, the registry the fake docker's, shared by this
    stack's hosts. ``ports``: more UpPorts. Returns (result, the keys pushed, the endpoint)."""
    from eice_server import FakeEndpoint

    from dsinfra.cloud.eice import tunnel_url_factory
    from dsinfra.ops.doctor import run_preflight

    registry = lab.base / f"registry-{tmp_path.name}"
    registry.mkdir()
    registry.chmod(0o777)
    options = replace(options, node_aws={"endpoint_url": hosts_moto_url,
                                         "aws_access_key_id": "testing",
                                         "aws_secret_access_key": "testing"},
                      image_poll_s=0.2, image_wait_s=60)
    for host in hosts:  # the engine's NCCL lines, recorded on 2x p5en (tests/fixtures/nccl)
        host.set_profile(nccl_log=str(NCCL_OFI_LOG), registry_dir=str(registry))
    endpoint_id = run.outputs["connect_endpoint"]["id"]
    local = FakeEndpoint(endpoint_id, secret_key="testing", region=config.region).start()
    engine = TwinEngine({**run.outputs, "connect_endpoint": {"id": endpoint_id,
                                                             "dns_name": local.dns_name}},
                        hosts, bastion, config.engine_port)
    pushed: list[tuple] = []

    def bootstrap(config, outputs, *, ssh_key_path, trust_on_first_use, progress, tunnel_url,
                  key_push):
        from dsinfra.bootstrap.runner import bootstrap_stack

        return bootstrap_stack(config, outputs, ssh_key_path=ssh_key_path,
                               trust_on_first_use=trust_on_first_use, progress=None,
                               options=replace(options, health_timeout_s=30),
                               tunnel_url=tunnel_url, key_push=key_push)

    try:
        result = bring_up(
            config, engine, now=NOW, ports=UpPorts(
                bootstrap=bootstrap, probe=_probe_from(bastion),
                tunnel_url=lambda o: tunnel_url_factory(o.region, o.connect_endpoint_id,
                                                        o.connect_endpoint_dns, scheme="ws"),
                key_push=lambda o: instance_connect(o, hosts, pushed),
                preflight=lambda c: run_preflight(c, client_factory=StubbedFactory(),
                                                  pulumi_version=lambda: "v3.200.0"),
                **ports),
            options=UpOptions(trust_on_first_use=True,  # no key file, no sshPublicKey
                              health_timeout_s=30, health_interval_s=0.5))
    finally:
        local.stop()
    return result, pushed, local


@pytest.mark.parametrize("tier", TIERS)
def test_up_reaches_a_healthy_endpoint_on_hosts_built_from_the_offline_plan(
        tier, lab, aws, tmp_path, options, monkeypatch, hosts_moto_url):
    values = {**read_stack_values(stack_file(tier, PROJECT_DIR)), "apiAllowedCidrs": [OFFICE]}
    config = parse_stack_config(tier, values)
    run = run_offline(tier, values)
    planned = planned_nodes(run, config.region)
    assert len(planned) == config.resolved_node_count

    bastion = lab.fresh("bastion", "g5.xlarge") if run.outputs["bastion"] else None
    # Hosts behind the bastion are made once with their private link: names of their own.
    hosts = [lab.fresh(f"{tier}{i}" if bastion or len(planned) > 1 else "single",
                       node.instance_type,
                       dlami=node.dlami, efa_interfaces=node.efa_interfaces, behind=bastion)
             for i, node in enumerate(planned)]
    result, pushed, local = _up_on_twin(config, run, hosts, bastion, lab, tmp_path, options,
                                        hosts_moto_url)
    # No key pair: each node was logged into with the session's pushed key.
    assert {p[0] for p in pushed} == {n["id"] for n in run.outputs["nodes"]}
    # Every node was reached through the endpoint, on its private address.
    assert {r.query["privateIpAddress"] for r in local.requests} == {h.listen for h in hosts}
    assert all(r.signature_ok and r.query["remotePort"] == "22" for r in local.requests)

    assert result.healthy is True, result.health_note
    report = result.bootstrap_result
    assert report.ok
    efa_step = {h.host: {s.step: s.status for s in h.steps}["efa"] for h in report.hosts}
    want = "skipped" if planned[0].efa_interfaces == 0 else "applied"
    assert set(efa_step.values()) == {want}
    nccl = {s.step: s.status for s in report.hosts[0].steps}["nccl-network"]
    # Per TierSpec, so a new tier runs this with its own traits (issue 26 item 5).
    spec = TIERS[tier]
    assert nccl == ("verified" if spec.efa and spec.default_node_count > 1 else "skipped")
    # A public tier pulls as named (its node has its own public address); the private and EFA
    # tiers run the image their head put into ECR, derived with the EFA user space over EFA.
    pushed = [p.name for p in (lab.base / f"registry-{tmp_path.name}").iterdir()]
    assert len(pushed) == (1 if spec.image_from_ecr else 0)
    if pushed:
        script = (hosts[-1].root / "fs/opt/dsinfra/etc/engine-run.sh").read_text()
        assert "dsinfra-local/vllm:" in script
        assert ("-efa" in pushed[0]) is spec.efa
    efa = INSTANCE_SPECS[spec.default_instance_type].efa_interfaces if spec.efa else 0
    assert (planned[0].instance_type, planned[0].efa_interfaces, len(planned)) == \
        (spec.default_instance_type, efa, spec.default_node_count)


@pytest.mark.parametrize("max_age_s", [3600.0, 2.0], ids=["aws-1h", "cut-every-2s"])
def test_up_dev_from_the_shipped_file_reaches_a_healthy_endpoint_with_no_port_open(
        lab, aws, tmp_path, options, max_age_s):
    """The shipped dev stack as it is (sshAllowedCidrs and apiAllowedCidrs empty, no
    sshPublicKey): bootstrap and the health check both go through the stack's EC2 Instance
    Connect Endpoint (a local one, eice_server.py, signature checked against moto's test
    credentials), on port 22 only, logged in with a key pushed by EC2 Instance Connect.

    ``cut-every-2s``: the endpoint ends each connection after 2 s (AWS: 1 hour), and the
    host's first ``cloud-init status`` takes 3 s, so bootstrap certainly loses its tunnel in
    the middle of a command (not by timing luck: a quiet machine finished inside 1 s and saw
    no cut, a loaded one could not upload the node kit inside 0.3 s); it reconnects and
    resumes (long work runs detached on the node), and `up` still ends healthy."""
    from eice_server import FakeEndpoint

    from dsinfra.cloud.eice import tunnel_url_factory

    values = read_stack_values(stack_file("dev", PROJECT_DIR))
    assert not values.get("sshAllowedCidrs") and not values.get("apiAllowedCidrs")
    config = parse_stack_config("dev", values)
    run = run_offline("dev", values)
    (node,) = planned_nodes(run, config.region)
    host = lab.fresh("single", node.instance_type, dlami=node.dlami)
    if max_age_s < 60:  # one command outlives the endpoint's maximum age
        host.set_faults([{"match": "cloud-init status", "sleep_s": max_age_s + 1.0}])
    endpoint_id = run.outputs["connect_endpoint"]["id"]
    local = FakeEndpoint(endpoint_id, secret_key="testing", region=config.region,
                         max_age_s=max_age_s).start()
    planned = {**run.outputs, "connect_endpoint": {"id": endpoint_id,
                                                   "dns_name": local.dns_name}}
    # The public address is one no test may reach: everything must go through the endpoint.
    planned["nodes"] = [{**planned["nodes"][0], "public_ip": "192.0.2.10"}]
    engine = TwinEngine(planned, [host], None, config.engine_port)
    pushed: list[tuple] = []
    engine.outputs = lambda stack: {**planned, "nodes": [{**planned["nodes"][0],
                                                          "private_ip": host.listen}],
                                    "ssh_user": USER}

    def bootstrap(config, outputs, *, ssh_key_path, trust_on_first_use, progress, tunnel_url,
                  key_push):
        from dsinfra.bootstrap.runner import bootstrap_stack

        return bootstrap_stack(config, outputs, ssh_key_path=ssh_key_path,
                               trust_on_first_use=trust_on_first_use, progress=None,
                               options=replace(options, health_timeout_s=30),
                               tunnel_url=tunnel_url, key_push=key_push)

    from dsinfra.ops.doctor import run_preflight

    try:
        result = bring_up(
            config, engine, now=NOW, ports=UpPorts(
                bootstrap=bootstrap,
                probe=lambda url, timeout_s: pytest.fail(f"probed {url} directly"),
                tunnel_url=lambda o: tunnel_url_factory(o.region, o.connect_endpoint_id,
                                                        o.connect_endpoint_dns, scheme="ws"),
                key_push=lambda o: instance_connect(o, [host], pushed),
                preflight=lambda c: run_preflight(c, client_factory=StubbedFactory(),
                                                  pulumi_version=lambda: "v3.200.0")),
            options=UpOptions(trust_on_first_use=True,  # no key file, no sshPublicKey
                              health_timeout_s=30, health_interval_s=0.5))
    finally:
        local.stop()

    assert not values.get("sshPublicKey") and pushed
    assert result.bootstrap_result.ok
    assert result.healthy is True, result.health_note
    assert f"(SSH via {endpoint_id})" in result.health_note
    # Port 22 only (the endpoint refuses any other port, as AWS does): the health check went
    # inside the SSH session as a direct-tcpip channel.
    assert {r.query["remotePort"] for r in local.requests} == {"22"}
    assert all(r.signature_ok and r.query["privateIpAddress"] == host.listen
               for r in local.requests)
    if max_age_s < 60:  # the cut happened, during bootstrap, and was survived
        assert local.expired >= 1 and len(local.requests) > local.expired
        logs = "".join(p.read_text()
                       for p in Path(result.bootstrap_result.run_dir).glob("*.log"))
        assert logs.count("connecting to") >= 2, "bootstrap itself lost its tunnel"


def _moto_replica_group(region: str, name: str, template: dict, size: int,
                        group: dict) -> None:
    """The stack's Auto Scaling group as `pulumi up` leaves it (infra/nodes.py): on the moto
    server, which launches its instances (moto's autoscaling runs them through its EC2
    backend and lists them InService: DescribeAutoScalingGroups' Instance.LifecycleState,
    the value AWS gives an instance past launch and lifecycle hooks). The TwinEngine fakes
    only Pulumi; the group's instances are AWS's, read back through the real client. The
    group carries the tags the program gives it (``group``: its inputs), propagated as
    there."""
    from dsinfra.cloud.aws import client

    ec2 = client("ec2", region)
    image = ec2.describe_images()["Images"][0]["ImageId"]  # moto's own AMIs; ours is a mock's
    made = ec2.create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={
            "ImageId": image, "InstanceType": template["instanceType"]})
    client("autoscaling", region).create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=size, MaxSize=size + 2, DesiredCapacity=size,
        LaunchTemplate={"LaunchTemplateId": made["LaunchTemplate"]["LaunchTemplateId"],
                        "Version": "$Latest"},
        AvailabilityZones=[f"{region}a"],
        Tags=[{"Key": t["key"], "Value": t["value"], "PropagateAtLaunch": t["propagateAtLaunch"],
               "ResourceId": name, "ResourceType": "auto-scaling-group"}
              for t in group["tags"]])


def test_up_of_a_dev_stack_with_two_replicas_reaches_two_healthy_replicas(
        lab, aws, tmp_path, options, hosts_moto_url):
    """Issue 27: a replicas stack's nodes are its Auto Scaling group's InService instances,
    read from AWS (cloud/replica_hosts.py), not its outputs (`nodes: []`). `up` waits for the
    group's minimum, bootstraps each instance as its own replica (head of a group of one, its
    own engine) and reports each one's health. The lab hosts stand in for the group's
    instances as they do for nodes above: the instance ids are moto's, the addresses the
    hosts'."""
    from dsinfra.cloud.replica_hosts import read_group

    values = {**read_stack_values(stack_file("dev", PROJECT_DIR)), "apiAllowedCidrs": [OFFICE],
              "replicas": 2}
    config = parse_stack_config("dev", values)
    run = run_offline("dev", values)
    assert run.outputs["nodes"] == [] and run.outputs["replicas"]["group"]
    (template,) = run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    dlami = template.inputs["imageId"] == mocked_ami(config.region, DLAMI_SSM_PARAMETER)
    group = run.outputs["replicas"]["group"]
    (group_resource,) = run.of_type("aws:autoscaling/group:Group")
    _moto_replica_group(config.region, group, template.inputs, config.replicas.min,
                        group_resource.inputs)
    hosts = [lab.fresh(f"replica{i}", template.inputs["instanceType"], dlami=dlami)
             for i in range(config.replicas.min)]

    reads: list[list[str]] = []

    def replica_group(outputs):
        state = read_group(outputs.region, outputs.replica_group)  # moto, through boto3
        reads.append([n.id for n in state.nodes])
        # Each InService instance on a test host: its address swapped for the host's.
        nodes = [replace(n, private_ip=host.listen,
                         public_ip=host.listen if n.public_ip else None)
                 for n, host in zip(state.nodes, hosts)]
        return replace(state, nodes=nodes)

    phases: list[tuple[str, str]] = []
    result, pushed, local = _up_on_twin(
        config, run, hosts, None, lab, tmp_path, options, hosts_moto_url,
        replica_group=replica_group,
        on_phase=lambda phase, message: phases.append((phase, message)))

    instances = reads[-1]
    assert len(instances) == 2 and all(i.startswith("i-") for i in instances)
    assert ("replicas", f"2/2 InService in Auto Scaling group {group}") in phases
    # Each replica bootstrapped as the head of its own engine, logged into by its own id.
    report = result.bootstrap_result
    assert report.ok and len(report.hosts) == 2
    assert {p[0] for p in pushed} == set(instances)
    assert {r.query["privateIpAddress"] for r in local.requests} == {h.listen for h in hosts}
    for host in hosts:
        script = (host.root / "fs/opt/dsinfra/etc/engine-run.sh").read_text()
        assert "ray" not in script and "--pipeline-parallel-size 1" in script
    assert result.healthy is True, result.health_note
    assert [(r.id, r.address, r.healthy, r.status) for r in result.replicas] == \
        [(i, h.listen, True, "healthy") for i, h in zip(instances, hosts)]


def test_up_of_distributed_with_two_replicas_runs_two_engines_each_within_its_group(
        lab, aws, tmp_path, options, hosts_moto_url):
    """Issue 27 on the EFA tier: `replicas: 2` is two node groups (infra/program.py), each a
    head with its worker. `up` bootstraps each group as its own engine: each worker joins its
    own group's head (Ray), each engine spans its group's two nodes, each head's health is
    checked and each replica reported."""
    values = {**read_stack_values(stack_file("distributed", PROJECT_DIR)),
              "apiAllowedCidrs": [OFFICE], "replicas": 2,
              "budget": {"amountUsd": 100_000, "period": "total", "onExceed": "destroy"}}
    config = parse_stack_config("distributed", values)
    run = run_offline("distributed", values)
    planned = run.outputs["nodes"]
    assert [(n["group"], n["role"]) for n in planned] == \
        [(0, "head"), (0, "worker"), (1, "head"), (1, "worker")]
    template = run.of_type("aws:ec2/launchTemplate:LaunchTemplate")[0].inputs
    dlami = template["imageId"] == mocked_ami(config.region, DLAMI_SSM_PARAMETER)
    bastion = lab.fresh("bastion", "g5.xlarge") if run.outputs["bastion"] else None
    hosts = [lab.fresh(f"distributed{i}", n["instance_type"], dlami=dlami,
                       efa_interfaces=n["efa_interfaces"], behind=bastion)
             for i, n in enumerate(planned)]
    result, pushed, local = _up_on_twin(config, run, hosts, bastion, lab, tmp_path, options,
                                        hosts_moto_url)

    report = result.bootstrap_result
    assert report.ok and len(report.hosts) == 4
    scripts = [(h.root / "fs/opt/dsinfra/etc/engine-run.sh").read_text() for h in hosts]
    for head in (0, 2):
        assert "--pipeline-parallel-size 2" in scripts[head]
        assert f"--address={hosts[head].listen}:6379" in scripts[head + 1]
    steps = [{s.step: s.status for s in h.steps} for h in report.hosts]
    assert [steps[0]["nccl-network"], steps[2]["nccl-network"]] == ["verified", "verified"]
    assert result.healthy is True, result.health_note
    heads = [n["id"] for n in planned if n["role"] == "head"]
    assert [(r.id, r.address, r.status) for r in result.replicas] == \
        [(heads[0], hosts[0].listen, "healthy"), (heads[1], hosts[2].listen, "healthy")]
