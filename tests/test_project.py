"""`dsinfra init`, the one project resolver, the one import-closure builder, `guard deploy
--dry-run` (no AWS client at all) and `dsinfra iam-policy`'s derivation, in process.
tests/test_installed_wheel.py runs the same commands from a built wheel."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsinfra.tiers import TIERS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli(monkeypatch, tmp_path):
    from motoserver import no_aws_credentials

    no_aws_credentials(tmp_path, monkeypatch)
    monkeypatch.delenv("DSINFRA_PROJECT_DIR", raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    from dsinfra.cli.main import app

    def invoke(*args: str):
        return CliRunner().invoke(app, list(args))

    return invoke


# --- init and the resolver --------------------------------------------------------------------

def test_init_writes_a_project_that_plans_and_refuses_to_overwrite(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = cli("init", "proj")
    assert made.exit_code == 0, made.output
    project = tmp_path / "proj"
    text = (project / "Pulumi.yaml").read_text()
    assert "name: dsinfra" in text and "main: program/" in text and "virtualenv" not in text
    assert "from dsinfra.infra.program import main" in (project / "program/__main__.py").read_text()
    ignored = (project / ".gitignore").read_text().splitlines()
    assert {".dsinfra/", ".pulumi/", "*.passphrase"} <= set(ignored)
    for tier in TIERS:  # every tier ships its stack
        assert (project / "stacks" / f"Pulumi.{tier}.yaml").read_text() == \
            (ROOT / "stacks" / f"Pulumi.{tier}.yaml").read_text()

    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    (project / "stacks" / "Pulumi.dev.yaml").write_text("# mine\n")
    before[project / "stacks" / "Pulumi.dev.yaml"] = b"# mine\n"
    again = cli("init", "proj")
    assert again.exit_code == 2
    assert "never overwrites" in again.output and len(again.output.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before


def test_the_resolver_walks_up_takes_project_and_env_and_says_what_to_do(cli, tmp_path,
                                                                          monkeypatch):
    from dsinfra.errors import UserError
    from dsinfra.ops.init import init_project
    from dsinfra.stackfiles import find_project_dir

    project = tmp_path / "a" / "proj"
    init_project(project)
    deep = project / "stacks" / "more"
    deep.mkdir()
    assert find_project_dir(deep) == project.resolve()
    elsewhere = tmp_path / "b"
    elsewhere.mkdir()
    with pytest.raises(UserError, match="no dsinfra project found"):
        find_project_dir(elsewhere)  # no fallback to the checkout dsinfra was installed from
    monkeypatch.chdir(elsewhere)
    lost = cli("stacks")
    assert lost.exit_code == 2 and "dsinfra init" in lost.output
    by_option = cli("--project", str(project), "stacks", "--json")
    assert by_option.exit_code == 0, by_option.output
    assert json.loads(by_option.output)["project_dir"] == str(project.resolve())
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(elsewhere))
    wrong = cli("stacks")
    assert wrong.exit_code == 2 and "invalid project folder" in wrong.output


def test_init_into_a_file_is_bad_input(cli, tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    done = cli("init", str(target))
    assert done.exit_code == 2 and "is a file" in done.output


# --- the one import-closure builder ----------------------------------------------------------

def test_guard_and_node_kit_come_from_the_same_closure_builder():
    from dsinfra.bootstrap import nodekit
    from dsinfra.ops.guard import LAMBDA_ENTRY, lambda_files
    from dsinfra.shipping import closure_files, module_closure

    assert lambda_files() == closure_files((LAMBDA_ENTRY,))
    closure = module_closure((LAMBDA_ENTRY,))
    # Every module of the closure, and nothing the Lambda runtime lacks.
    assert "dsinfra.ops.check" in closure and "dsinfra.cloud.aws" in closure
    assert not {"dsinfra.config", "dsinfra.infra", "dsinfra.cli"} & set(closure)
    kit_files = set(closure_files(nodekit.ENTRY_MODULES))
    data, _ = nodekit.build_kit()
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = set(tar.getnames())
    assert kit_files <= names


def test_a_host_script_must_stand_alone():
    from dsinfra.shipping import script_source

    assert "def main" in script_source("dsinfra.bootstrap.gpu_probe")
    with pytest.raises(RuntimeError, match="imports"):
        script_source("dsinfra.ops.guard_lambda")


# --- guard deploy --dry-run ------------------------------------------------------------------

def test_guard_dry_run_builds_the_package_and_creates_no_aws_client(cli, monkeypatch, tmp_path):
    import boto3
    import botocore.session

    def refuse(*args, **kwargs):
        raise AssertionError("guard deploy --dry-run created an AWS client")

    monkeypatch.setattr(boto3, "client", refuse)
    monkeypatch.setattr(boto3.session.Session, "client", refuse)
    monkeypatch.setattr(botocore.session.Session, "create_client", refuse)
    from dsinfra.cli import guard

    monkeypatch.setattr(guard, "make_engine", refuse)
    done = cli("guard", "deploy", "--dry-run", "--region", "us-east-1", "--json")
    assert done.exit_code == 0, done.output
    plan = json.loads(done.output)
    from dsinfra.ops.guard import build_lambda_zip, lambda_files

    zipped = build_lambda_zip(tmp_path / "g.zip")
    assert plan["package"]["bytes"] == zipped.stat().st_size
    with zipfile.ZipFile(zipped) as archive:
        assert sorted(archive.namelist()) == sorted(lambda_files()) == plan["package"]["files"]
    assert plan["config"]["dsinfra-guard:regions"] == '["us-east-1"]'
    text = cli("guard", "deploy", "--dry-run", "--region", "us-east-1")
    assert text.exit_code == 0 and "nothing created" in text.output
    assert "aws:scheduler/schedule:Schedule" in text.output


# --- iam-policy ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def derivation():
    from dsinfra.ops.iam import derive

    return derive(ROOT)


def _statements(document_list):
    return {s["Sid"]: s for d in document_list for s in d["Statement"]}


def test_iam_policy_covers_every_resource_the_offline_plans_create(derivation):
    from dsinfra.infra.iam import actions_for
    from dsinfra.infra.offline import run_offline
    from dsinfra.ops.iam import policy_document
    from dsinfra.stackfiles import read_stack_values, stack_file

    policy = policy_document(derivation)
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    anywhere = set(by_sid["CreateAndRead"]["Action"])
    stack_change = set(by_sid["ChangeOnlyStackResources"]["Action"])
    assert by_sid["ChangeOnlyStackResources"]["Condition"] == \
        {"Null": {"aws:ResourceTag/dsinfra:stack": "false"}}
    for tier in TIERS:  # every tier ships its stack
        run = run_offline(tier, read_stack_values(stack_file(tier, ROOT)))
        types = {r.type for r in run.resources if r.type.startswith("aws:")}
        assert types <= set(derivation.stack_types)
        for token in types:
            row = actions_for(token)
            assert set(row.create) | set(row.read) <= anywhere, token
            assert set(row.change) <= stack_change, token
    # Passing roles: only to the services the programs hand them to.
    assert by_sid["PassRolesToTheirServices"]["Condition"]["StringEquals"][
        "iam:PassedToService"] == ["ec2.amazonaws.com", "lambda.amazonaws.com",
                                   "scheduler.amazonaws.com"]


def test_iam_policy_covers_the_guard_program_and_dsinfras_own_calls(derivation):
    from dsinfra.cloud.actions import check_permissions
    from dsinfra.infra.iam import actions_for
    from dsinfra.ops.iam import policy_document

    policy = policy_document(derivation)
    every = {a for s in policy["Statement"] for a in s["Action"]}
    guard = {s["Sid"]: s for s in policy["Statement"]}["ChangeOnlyTheGuard"]
    assert "aws:lambda/function:Function" in derivation.guard_types
    for token in derivation.guard_types:
        assert set(actions_for(token).create) <= every, token
    assert "lambda:UpdateFunctionCode" in guard["Action"]
    # The cost check the deployer runs (and the guard runs for them).
    assert set(check_permissions()) <= every
    # Calls read from the source: the tunnel, and teardown's sweep.
    assert "ec2-instance-connect:OpenTunnel" in every
    assert "ec2:TerminateInstances" in derivation.edge["dsinfra.cloud.teardown"]
    # doctor's and capacity's reads, now in cloud/: every one still in the policy, the quota
    # reads included (a loop over bound methods hid them from the derivation before).
    assert {"sts:GetCallerIdentity", "ec2:DescribeInstanceTypeOfferings",
            "ec2:DescribeInstances", "ec2:DescribeImages", "ssm:GetParameter",
            "s3:GetBucketLocation", "s3:GetObject", "ec2:GetSpotPlacementScores",
            "servicequotas:GetServiceQuota", "servicequotas:GetAWSDefaultServiceQuota"} <= set(
        derivation.edge["dsinfra.cloud.preflight"])
    assert {"ec2:DescribeCapacityBlockOfferings", "ec2:PurchaseCapacityBlock",
            "ec2:DescribeCapacityReservations"} <= set(
        derivation.edge["dsinfra.cloud.capacity_blocks"])


def test_every_ec2_instance_connect_call_is_allowed_only_on_the_stack_tag(derivation):
    """Access pushes a one-time key per session and opens the endpoint tunnel: the actions the
    source calls (read from it, not listed here) each get a statement on the stack tag, never
    ``*`` unconditioned, with the tunnel held to port 22 and keys to the nodes' login user."""
    from dsinfra.cloud import eice
    from dsinfra.infra.program import SSH_USER
    from dsinfra.ops.iam import REACH_SERVICE, policy_document

    called = {a for actions in derivation.edge.values() for a in actions
              if a.startswith(f"{REACH_SERVICE}:")}
    # Found from the boto3 call in cloud/eice.py (SendSSHPublicKey) and the hand-signed
    # tunnel's declaration (OpenTunnel): the key push is not declared a second time.
    assert {"ec2-instance-connect:SendSSHPublicKey", "ec2-instance-connect:OpenTunnel"} <= called
    assert "ec2-instance-connect:SendSSHPublicKey" not in eice.PERMISSIONS
    statements = policy_document(derivation)["Statement"]
    reach = [s for s in statements if any(a in called for a in s["Action"])]
    assert sorted(a for s in reach for a in s["Action"]) == sorted(called)
    for statement in reach:
        assert statement["Action"] == [statement["Action"][0]]  # one action, its own keys
        assert statement["Condition"]["Null"] == {"aws:ResourceTag/dsinfra:stack": "false"}
    by_action = {s["Action"][0]: s["Condition"] for s in reach}
    assert by_action["ec2-instance-connect:OpenTunnel"]["NumericEquals"] == \
        {"ec2-instance-connect:remotePort": "22"}
    assert by_action["ec2-instance-connect:SendSSHPublicKey"]["StringEquals"] == \
        {"ec2:osuser": SSH_USER}


def test_a_resource_type_with_no_row_is_an_error_not_a_gap():
    from dsinfra.infra.iam import actions_for

    with pytest.raises(KeyError, match="no IAM row"):
        actions_for("aws:rds/instance:Instance")


def test_iam_policy_documents_each_fit_a_managed_policy(cli, derivation, monkeypatch):
    from dsinfra.ops.iam import MANAGED_POLICY_MAX_CHARS, policy_document, split_documents

    whole = policy_document(derivation)
    parts = split_documents(whole)
    for part in parts:
        assert len(json.dumps(part, separators=(",", ":"))) <= MANAGED_POLICY_MAX_CHARS
    assert sorted(a for p in parts for s in p["Statement"] for a in s["Action"]) == \
        sorted(a for s in whole["Statement"] for a in s["Action"])
    monkeypatch.chdir(ROOT)
    shown = cli("iam-policy", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) == parts
    too_far = cli("iam-policy", "--part", str(len(parts) + 1))
    assert too_far.exit_code == 2 and "--part" in too_far.output


def test_iam_policy_before_init_is_the_shipped_stacks_one(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = cli("iam-policy", "--part", "1")
    assert done.exit_code == 0, done.output
    assert "no dsinfra project here" in done.output


# --- the Pulumi engine's defaults ------------------------------------------------------------

def test_pulumi_runs_on_our_python_with_local_state_and_needs_the_passphrase(tmp_path,
                                                                              monkeypatch):
    import sys

    from dsinfra.errors import UserError
    from dsinfra.infra import automation

    for name in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE",
                 "PULUMI_CONFIG_PASSPHRASE_FILE"):
        monkeypatch.delenv(name, raising=False)
    engine = automation.PulumiEngine(tmp_path)
    assert engine.env_vars["PULUMI_PYTHON_CMD"] == sys.executable
    state = (tmp_path / ".dsinfra" / "pulumi").resolve()
    assert engine.env_vars["PULUMI_BACKEND_URL"] == state.as_uri()
    monkeypatch.setattr(automation, "pulumi_cli_version", lambda: "v3.200.0")
    with pytest.raises(UserError, match="PULUMI_CONFIG_PASSPHRASE is not set"):
        engine.outputs("dev")
    assert not state.exists()  # nothing written before the check
    # A backend the user chose is theirs: no local default, no passphrase demanded of it.
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://my-state-bucket")
    assert "PULUMI_BACKEND_URL" not in automation.PulumiEngine(tmp_path).env_vars


def test_the_guard_workspace_lives_with_the_project_not_in_the_package(tmp_path, monkeypatch):
    from dsinfra.ops import guard_deploy
    from dsinfra.ops.init import init_project

    for name in ("PULUMI_BACKEND_URL",):
        monkeypatch.delenv(name, raising=False)
    project = tmp_path / "proj"
    init_project(project)
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(project))
    engine = guard_deploy.guard_engine()
    work = project.resolve() / ".dsinfra" / "guard"
    assert Path(engine.project_dir).resolve() == work
    assert (work / "__main__.py").read_text() == \
        (guard_deploy.GUARD_PROGRAM_DIR / "__main__.py").read_text()
    (work / "Pulumi.guard.yaml").write_text("config: {}\n")  # what set_config wrote: kept
    guard_deploy.guard_engine()
    assert (work / "Pulumi.guard.yaml").read_text() == "config: {}\n"
    assert engine.env_vars["PULUMI_BACKEND_URL"] == \
        (project.resolve() / ".dsinfra" / "pulumi").as_uri()
