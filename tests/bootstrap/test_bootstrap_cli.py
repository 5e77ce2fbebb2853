"""``dsinfra bootstrap`` end to end: inventory and stack modes, --json, exit statuses."""

from __future__ import annotations

import json

import pytest
from conftest import host_entry, write_inventory
from typer.testing import CliRunner

from dsinfra.cli.main import app


@pytest.fixture(autouse=True)
def short_health_polls(monkeypatch):
    """The CLI builds its BootstrapOptions with the product's waits: the host asks the
    engine's /health every 2 s and reports every 15 s, so each run here paid up to 2 s after
    the fake engine (0.3 s to load) was ready. The tests' polls instead (conftest.py's
    bootstrap_options: 0.2 s, 1 s); every other option is the CLI's own."""
    from dsinfra.bootstrap import runner

    real = runner.BootstrapOptions
    monkeypatch.setattr(runner, "BootstrapOptions", lambda **kw: real(
        **{"health_poll_s": 0.2, "health_report_s": 1.0, **kw}))


def test_inventory_bootstrap_prints_the_json_report(lab, tmp_path, secrets_env, monkeypatch):
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path / "state"))
    host = lab.fresh("single", "g5.2xlarge", dlami=True)
    inventory = write_inventory(tmp_path / "hosts.yaml", [host_entry(lab, host)])

    result = CliRunner().invoke(app, ["bootstrap", "--inventory", str(inventory), "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["endpoint"] == f"http://{host.listen}:8000/v1"
    steps = [s["step"] for s in report["hosts"][0]["steps"]]  # watchers are appended after
    assert steps[steps.index("engine"):steps.index("nccl-network") + 1] == [
        "engine", "health", "nccl-network"]
    assert steps[-2:] == ["spot-watch", "idle-watch"]
    assert set(report["hosts"][0]["steps"][0]) == {"step", "status", "duration_s", "detail",
                                                   "command", "output_tail"}

    again = CliRunner().invoke(app, ["bootstrap", "--inventory", str(inventory)])

    assert again.exit_code == 0 and again.stdout == ""
    assert "bootstrap hosts: ok" in again.stderr and "already done" in again.stderr
    assert f"endpoint: http://{host.listen}:8000/v1" in again.stderr


def test_stack_bootstrap_reads_outputs_and_refuses_hosts_without_pinned_keys(
        lab, tmp_path, secrets_env, monkeypatch, aws):
    import dsinfra.cloud.aws as aws_edge
    from dsinfra.cloud.aws import client

    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path / "state"))
    host = lab.fresh("single", "g5.2xlarge", dlami=True)
    ec2 = client("ec2", "us-east-1")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance_id = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"]
    outputs = {"nodes": [{"id": instance_id, "role": "head", "private_ip": host.listen,
                          "public_ip": host.listen, "instance_type": "g5.2xlarge",
                          "efa_interfaces": 0}],
               "bastion": None, "endpoint": f"http://{host.listen}:8000/v1",
               "ssh_user": "dsinfra-test", "region": "us-east-1"}

    class FakeEngine:
        def __init__(self, project_dir, env_vars=None):
            pass

        def outputs(self, stack):
            assert stack == "dev"
            return outputs

    monkeypatch.setattr("dsinfra.infra.automation.PulumiEngine", FakeEngine)
    read, real_read = [], aws_edge.console_output  # the CLI hands bootstrap the EC2 reader
    monkeypatch.setattr(aws_edge, "console_output",
                        lambda i, region: read.append((i, region)) or real_read(i, region))
    args = ["bootstrap", "dev", "--ssh-key", str(lab.client_key), "--json"]

    refused = CliRunner().invoke(app, args)
    trusted = CliRunner().invoke(app, args + ["--trust-on-first-use"])

    assert read and read[0] == (instance_id, "us-east-1")
    assert refused.exit_code == 3
    assert "no pinned host key" in json.loads(refused.stdout)["hosts"][0]["steps"][0]["detail"]
    assert "bootstrap failed on 1 host(s)" in refused.stderr
    assert trusted.exit_code == 0, trusted.output
    assert json.loads(trusted.stdout)["endpoint"] == outputs["endpoint"]


def test_stack_bootstrap_of_a_replicas_stack_takes_its_groups_in_service_instances(
        lab, tmp_path, secrets_env, monkeypatch, aws):
    """Issue 27: the outputs list no nodes (`nodes: []`, the group's instances are AWS's);
    the hosts are the Auto Scaling group's InService instances, read from AWS (moto, which
    launches them), each its own replica. The lab host stands in for the instance at its
    address, as tests/bootstrap/test_twins.py maps them."""
    from dataclasses import replace

    import dsinfra.cloud.replica_hosts as replica_hosts
    from dsinfra.cloud.aws import client

    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path / "state"))
    host = lab.fresh("single", "g5.2xlarge", dlami=True)
    ec2 = client("ec2", "us-east-1")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    template = ec2.create_launch_template(LaunchTemplateName="dev-gpu", LaunchTemplateData={
        "ImageId": image, "InstanceType": "g5.2xlarge"})["LaunchTemplate"]
    client("autoscaling", "us-east-1").create_auto_scaling_group(
        AutoScalingGroupName="dev-gpu", MinSize=1, MaxSize=2, DesiredCapacity=1,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"],
                        "Version": "$Latest"}, AvailabilityZones=["us-east-1a"])
    outputs = {"nodes": [], "bastion": None, "endpoint": "http://lb:8000",
               "ssh_user": "dsinfra-test", "region": "us-east-1",
               "replicas": {"group": "dev-gpu", "target_group_arn": "arn:tg",
                            "launch_template_id": template["LaunchTemplateId"]}}

    class FakeEngine:
        def __init__(self, project_dir, env_vars=None):
            pass

        def outputs(self, stack):
            return outputs

    real_read, read = replica_hosts.read_group, []

    def on_the_lab_host(region, group, **clients):
        state = real_read(region, group, **clients)
        read.append([n.id for n in state.nodes])
        return replace(state, nodes=[replace(n, private_ip=host.listen, public_ip=host.listen)
                                     for n in state.nodes])

    monkeypatch.setattr("dsinfra.infra.automation.PulumiEngine", FakeEngine)
    monkeypatch.setattr(replica_hosts, "read_group", on_the_lab_host)
    result = CliRunner().invoke(app, ["bootstrap", "dev", "--ssh-key", str(lab.client_key),
                                      "--json", "--trust-on-first-use"])

    assert result.exit_code == 0, result.output
    (instances,) = read
    report = json.loads(result.stdout)
    assert [h["host"] for h in report["hosts"]] == instances and instances[0].startswith("i-")


def test_stack_and_inventory_together_is_bad_input(tmp_path):
    result = CliRunner().invoke(app, ["bootstrap", "dev", "--inventory", "x.yaml"])
    assert result.exit_code == 2
    assert "give either STACK or --inventory" in result.stderr


def test_up_passes_the_key_from_the_environment_and_gets_progress_lines(lab, tmp_path, options,
                                                                       monkeypatch):
    from dsinfra.bootstrap.runner import bootstrap_stack
    from dsinfra.outputs import StackOutputs
    from dsinfra.stackfiles import load_stack

    stack_key = "dsk-from-env-9f8e7d6c5b4a39281706"
    monkeypatch.setenv("DSINFRA_API_KEY", stack_key)
    host = lab.fresh("single", "g5.2xlarge", dlami=True)
    outputs = StackOutputs.from_dict({
        "nodes": [{"id": "i-0123456789abcdef0", "role": "head", "private_ip": host.listen,
                   "public_ip": host.listen, "instance_type": "g5.2xlarge",
                   "efa_interfaces": 0}],
        "bastion": None, "endpoint": f"http://{host.listen}:8000", "ssh_user": "dsinfra-test",
        "region": "us-east-1"})
    lines: list[str] = []

    report = bootstrap_stack(load_stack("dev"), outputs, ssh_key_path=lab.client_key,
                             trust_on_first_use=True, progress=lines.append, options=options)

    assert report.ok and report.endpoint == outputs.endpoint
    env_file = (host.root / "fs/opt/dsinfra/etc/engine.env").read_text()
    assert f"VLLM_API_KEY={stack_key}" in env_file
    assert any(line.startswith("i-0123456789abcdef0: engine: ") for line in lines)
    assert all(stack_key not in line for line in lines)
