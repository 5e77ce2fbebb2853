"""`dsinfra deploy` refusals at the door (issue 27): one line, exit 2, nothing changed (no
launch template version, no audit record). The rollout itself is proven on the test twin
(tests/bootstrap/test_deploy_twin.py)."""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from typer.testing import CliRunner

MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
BASE = {"dsinfra:tier": "dev", "dsinfra:region": "us-east-1", "dsinfra:model": MODEL,
        "dsinfra:engine": "vllm", "dsinfra:budget": {"amountUsd": 1000}}
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dsinfra/vllm"


@pytest.fixture
def project(aws, tmp_path, monkeypatch):
    import boto3

    from dsinfra.ops import deploy as ops_deploy
    from dsinfra.outputs import StackOutputs

    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text("name: dsinfra\nruntime: python\n")
    (root / "stacks" / "Pulumi.svc.yaml").write_text(
        yaml.safe_dump({"config": {**BASE, "dsinfra:replicas": 2,
                                   "dsinfra:replicaImage": "ami-0123456789abcdef0"}}))
    (root / "stacks" / "Pulumi.unbaked.yaml").write_text(
        yaml.safe_dump({"config": {**BASE, "dsinfra:replicas": 2}}))
    (root / "stacks" / "Pulumi.single.yaml").write_text(yaml.safe_dump({"config": BASE}))
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(root))
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path / "state"))
    ec2 = boto3.client("ec2", region_name="us-east-1")
    lt = ec2.create_launch_template(LaunchTemplateName="svc", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "UserData": base64.b64encode(b"#!/bin/bash\n").decode()})[
        "LaunchTemplate"]["LaunchTemplateId"]
    outputs = StackOutputs(nodes=[], bastion=None, endpoint="", ssh_user="ubuntu",
                           region="us-east-1", replica_group="svc-replicas",
                           target_group_arn="arn:aws:elasticloadbalancing:us-east-1:"
                           "123456789012:targetgroup/svc/0123456789abcdef",
                           launch_template_id=lt)
    monkeypatch.setattr(ops_deploy, "stack_outputs", lambda stack: outputs)
    ecr = boto3.client("ecr", region_name="us-east-1")
    ecr.create_repository(repositoryName="dsinfra/vllm")
    ecr.put_image(repositoryName="dsinfra/vllm", imageTag="v1", imageManifest=json.dumps(
        {"schemaVersion": 2,
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}))
    return {"root": root, "state": tmp_path / "state", "ec2": ec2, "lt": lt}


@pytest.mark.parametrize("args,names", [
    (["nope"], ["unknown stack 'nope'", "allowed: single, svc, unbaked"]),
    (["single"], ["STACK", "dsinfra:replicas"]),
    (["unbaked"], ["STACK", "dsinfra image bake unbaked"]),
    (["svc", "--image", "vllm/vllm-openai:latest"], ["--image", ":latest"]),
    (["svc", "--image", "vllm/vllm-openai"], ["--image", "pinned tag or digest"]),
    (["svc", "--image", f"{ECR}:v2"], ["--image", "ECR", "v2"]),
    (["svc", "--image", "123456789012.dkr.ecr.us-east-1.amazonaws.com/dsinfra/other:v1"],
     ["--image", "dsinfra/other"]),
    (["svc", "--model", "not a repo id"], ["--model", "'not a repo id'"]),
    (["svc", "--engine-arg", "--max-num-seqs=8\nExecStartPre=/bin/sh"], ["--engine-arg",
                                                                       "one line"]),
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(project, args, names):
    from dsinfra.cli.main import app

    result = CliRunner().invoke(app, ["deploy", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for name in names:
        assert name in lines[0]
    assert "Traceback" not in result.output
    versions = project["ec2"].describe_launch_template_versions(
        LaunchTemplateId=project["lt"])["LaunchTemplateVersions"]
    assert len(versions) == 1
    assert not (project["state"] / "audit.jsonl").exists()


def test_an_image_the_accounts_ecr_has_passes_the_door(project):
    from dsinfra.ops.deploy import door

    checked = door("svc", model=None, image=f"{ECR}:v1", engine_args=["--max-num-seqs", "8"])
    assert checked.target.resolved_engine_image == f"{ECR}:v1"
    assert list(checked.target.engine.extra_args) == ["--max-num-seqs", "8"]


def test_user_data_keeps_the_templates_own_lines_and_replaces_the_engine_section():
    from dsinfra.config import parse_stack_config
    from dsinfra.ops.deploy import SECTION_BEGIN, engine_user_data

    values = {k.split(":", 1)[1]: v for k, v in BASE.items()}
    first = engine_user_data("#!/bin/bash\necho agent\n", parse_stack_config("svc", values))
    second = engine_user_data(first, parse_stack_config(
        "svc", {**values, "engineImage": "vllm/vllm-openai:v0.11.1"}))
    assert second.startswith("#!/bin/bash\necho agent\n") and second.count(SECTION_BEGIN) == 1
    assert "vllm/vllm-openai:v0.11.1" in second and "DSINFRA_API_KEY" not in second


def test_a_replica_group_aws_does_not_have_is_exit_3_audited_and_nothing_made(project):
    from dsinfra.cli.main import app

    result = CliRunner().invoke(app, ["deploy", "svc", "--image", "vllm/vllm-openai:v0.11.1"])
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("error: stack 'svc': its replica group svc-replicas does "
                                    "not exist in us-east-1")
    records = [json.loads(line) for line in
               (project["state"] / "audit.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["deploy.failed"]
    assert records[0]["notice"].startswith("not sent")
    versions = project["ec2"].describe_launch_template_versions(
        LaunchTemplateId=project["lt"])["LaunchTemplateVersions"]
    assert len(versions) == 1
