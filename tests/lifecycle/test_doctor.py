"""`dsinfra doctor` against the moto server (STS, EC2 offerings, instances, images) and, where
moto has no answer, botocore Stubber with recorded responses: Service Quotas has no ec2 quotas
in moto, and moto lacks the public DLAMI SSM parameter."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dsinfra.cloud.aws import client
from dsinfra.ops.doctor import check_budget, estimate_stack_cost, run_doctor
from dsinfra.config import parse_stack_config
from dsinfra.tags import STACK

from .fakes import StubbedFactory

V = "v3.200.0"


def _config(**values):
    base = {"tier": "distributed", "instanceType": "p5.48xlarge", "nodeCount": 2,
            "budget": {"amountUsd": 200_000}}
    return parse_stack_config("dist", {**base, **values})


def test_all_checks_pass_with_quota_zones_ami_and_budget(aws):
    factory = StubbedFactory(quota_value=384, expect_quota_code="L-417A185B")
    report = run_doctor(_config(), client_factory=factory, pulumi_version=lambda: V)
    assert report.ok, report.to_dict()
    assert report.get("Pulumi CLI").detail == f"pulumi {V}"
    assert "123456789012" in report.get("AWS credentials").detail
    assert report.get("instance type offered").data["zones"][:2] == ["us-east-1a", "us-east-1b"]
    assert report.get("vCPU quota").data == {"quota_code": "L-417A185B", "limit": 384.0,
                                             "in_use": 0, "needed": 384}
    assert report.get("AMI").data["ami_id"] == "ami-0123456789abcdef0"
    for stub in factory.stubbers:
        stub.assert_no_pending_responses()


def test_quota_below_need_fails_with_the_exact_increase_command(aws):
    report = run_doctor(_config(), client_factory=StubbedFactory(quota_value=192),
                        pulumi_version=lambda: V)
    quota = report.get("vCPU quota")
    assert quota.status == "fail" and not report.ok
    assert quota.fix == ("aws service-quotas request-service-quota-increase --service-code ec2 "
                         "--quota-code L-417A185B --desired-value 384 --region us-east-1")


def test_running_instances_of_other_stacks_count_against_the_quota(aws):
    ec2 = client("ec2", "us-east-1")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=image, InstanceType="p4d.24xlarge", MinCount=1, MaxCount=1,
                      TagSpecifications=[{"ResourceType": "instance",
                                          "Tags": [{"Key": STACK, "Value": "other"}]}])
    ec2.run_instances(ImageId=image, InstanceType="p4d.24xlarge", MinCount=1, MaxCount=1,
                      TagSpecifications=[{"ResourceType": "instance",
                                          "Tags": [{"Key": STACK, "Value": "dist"}]}])
    ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1)
    report = run_doctor(_config(), client_factory=StubbedFactory(quota_value=400),
                        pulumi_version=lambda: V)
    quota = report.get("vCPU quota")
    assert quota.data["in_use"] == 96  # the other stack's p4d; not our own, not the t3
    assert quota.status == "fail"
    assert "--desired-value 480" in quota.fix


def test_spot_stack_reads_the_spot_quota_code(aws):
    config = parse_stack_config("d", {"tier": "dev", "spot": True, "budget": {"amountUsd": 999}})
    report = run_doctor(config, client_factory=StubbedFactory(expect_quota_code="L-3819A6DF"),
                        pulumi_version=lambda: V)
    assert report.get("vCPU quota").data["quota_code"] == "L-3819A6DF"


def test_unreadable_quota_is_a_warning_with_the_command_to_read_it(aws):
    report = run_doctor(_config(), client_factory=StubbedFactory(quota_value=None),
                        pulumi_version=lambda: V)
    assert report.get("vCPU quota").status == "warn"
    assert "get-service-quota" in report.get("vCPU quota").fix


def test_zone_that_does_not_offer_the_type_fails_naming_those_that_do(aws):
    config = parse_stack_config("d", {"tier": "distributed", "instanceType": "p5en.48xlarge",
                                      "availabilityZone": "us-east-1b",
                                      "budget": {"amountUsd": 999_999}})
    check = run_doctor(config, client_factory=StubbedFactory(),
                       pulumi_version=lambda: V).get("instance type offered")
    assert check.status == "fail"
    assert check.data["zones"] == ["us-east-1a", "us-east-1c"]
    assert "us-east-1a, us-east-1c" in check.fix


def test_dlami_not_resolvable_falls_back_to_describe_images_then_fails(aws):
    # SSM answers ParameterNotFound for both paths (Stubber); describe_images runs on moto,
    # which holds no image owned by the DLAMI account.
    report = run_doctor(_config(), client_factory=StubbedFactory(dlami=None),
                        pulumi_version=lambda: V)
    assert report.get("AMI").status == "fail"
    assert "dsinfra:amiId" in report.get("AMI").fix


def test_configured_ami_is_looked_up_in_the_region(aws):
    image = client("ec2", "us-east-1").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ok = run_doctor(_config(amiId=image), client_factory=StubbedFactory(),
                    pulumi_version=lambda: V)
    assert ok.get("AMI").status == "pass"
    missing = run_doctor(_config(amiId="ami-00000000000000000"), client_factory=StubbedFactory(),
                         pulumi_version=lambda: V)
    assert missing.get("AMI").status == "fail"


def test_missing_pulumi_cli_fails_with_the_install_command(aws):
    report = run_doctor(None, client_factory=StubbedFactory(), pulumi_version=lambda: None)
    assert report.get("Pulumi CLI").status == "fail"
    assert "get.pulumi.com" in report.get("Pulumi CLI").fix


def test_bad_credentials_fail_and_skip_the_aws_checks(aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: refused
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    from dsinfra.cloud import aws as aws_module

    monkeypatch.setattr(aws_module, "MAX_ATTEMPTS", 1)
    aws_module.reset_session()
    report = run_doctor(_config(), pulumi_version=lambda: V)
    assert report.get("AWS credentials").status == "fail"
    assert report.get("vCPU quota").status == "warn"
    assert "aws configure" in report.get("AWS credentials").fix


def test_budget_check_compares_the_estimate_with_the_budget():
    over = _config(budget={"amountUsd": 1000})
    check = check_budget(over, estimate_stack_cost(over))
    assert check.status == "fail" and "--force" in check.fix
    # two p5.48xlarge at $55.04/h dominate the estimate
    assert estimate_stack_cost(over).hourly_usd == pytest.approx(110.08, rel=0.01)


def test_ttl_with_a_stopping_action_bounds_a_monthly_budget():
    values = {"tier": "dev", "ttlHours": 12, "budget": {"amountUsd": 300, "onExceed": "stop"}}
    stopping = parse_stack_config("d", values)
    assert check_budget(stopping, estimate_stack_cost(stopping)).status == "pass"
    notify = parse_stack_config("d", {**values, "budget": {"amountUsd": 300,
                                                          "onExceed": "notify"}})
    assert check_budget(notify, estimate_stack_cost(notify)).status == "fail"


def test_doctor_cli_json_and_exit_status(aws, monkeypatch):
    import dsinfra.ops.doctor as doctor

    monkeypatch.setattr(doctor, "_default_client", StubbedFactory())
    from dsinfra.cli.main import app

    result = CliRunner().invoke(app, ["doctor", "prod", "--json"])
    payload = json.loads(result.stdout)
    assert [c["name"] for c in payload["checks"]] == [
        "Pulumi CLI", "AWS credentials", "instance type offered", "vCPU quota", "AMI",
        "SSH access", "budget"]
    # no pulumi CLI on this machine: doctor says so and exits 3
    assert payload["ok"] is False and result.exit_code == 3
    assert "Traceback" not in result.output


def test_doctor_cli_unknown_stack_exits_2():
    from dsinfra.cli.main import app

    result = CliRunner().invoke(app, ["doctor", "nope"])
    assert result.exit_code == 2 and "unknown stack 'nope'" in result.output


def test_access_needs_no_key_pair_as_instance_connect_pushes_a_one_time_key():
    from dsinfra.ops.doctor import check_access

    keyless = check_access(_config())
    assert keyless.status == "pass" and "no key pair" in keyless.detail
    assert "ec2-instance-connect:SendSSHPublicKey" in keyless.detail
    assert "port 22" in keyless.detail
    keyed = check_access(_config(sshPublicKey="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI x@y"))
    assert keyed.status == "pass" and "Instance Connect Endpoint" in keyed.detail
    assert "sshPublicKey" in keyed.detail
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI x@y"
    # A private tier opens sshAllowedCidrs on its bastion only, and has none unless asked.
    unused = check_access(_config(sshPublicKey=key, sshAllowedCidrs=["203.0.113.7/32"]))
    assert "203.0.113.7/32" not in unused.detail
    opened = check_access(_config(sshPublicKey=key, sshAllowedCidrs=["203.0.113.7/32"],
                                  bastion=True))
    assert opened.status == "pass" and "203.0.113.7/32 on the bastion" in opened.detail


def test_a_custom_image_with_no_key_has_no_way_in_and_fails():
    """A custom amiId may lack the EC2 Instance Connect agent (and apt to install it): with
    no sshPublicKey either, no key could log in, so doctor fails and `up` refuses in one line
    (exit 2) before reading or creating anything."""
    from dsinfra.errors import UserError
    from dsinfra.ops.doctor import check_access
    from dsinfra.ops.up import UpPorts, bring_up

    custom = _config(amiId="ami-0123456789abcdef0")
    failed = check_access(custom)
    assert failed.status == "fail" and "ami-0123456789abcdef0" in failed.detail
    assert "dsinfra:sshPublicKey" in failed.detail
    keyed = check_access(_config(amiId="ami-0123456789abcdef0",
                                 sshPublicKey="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI x@y"))
    assert keyed.status == "pass"

    class NothingMayBeCalled:
        def __getattr__(self, name):
            raise AssertionError(f"up called the engine's {name} with no way in")

    with pytest.raises(UserError) as refused:
        bring_up(custom, NothingMayBeCalled(), ports=UpPorts(
            preflight=lambda c: pytest.fail("preflight ran: AWS was asked")))
    assert refused.value.exit_code == 2 and "\n" not in refused.value.message
    assert "dsinfra:amiId ami-0123456789abcdef0" in refused.value.message


def test_dlami_fallback_picks_the_newest_matching_image():
    """SSM misses both parameter paths; describe_images (recorded shape, Stubber: moto cannot
    hold images of the DLAMI owner account) lists two releases and the newest wins."""
    from botocore.stub import Stubber

    from dsinfra.cloud.preflight import DLAMI_NAME, DLAMI_OWNER, DLAMI_PARAMETERS, resolve_dlami

    ssm = client("ssm", "us-east-1")
    ec2 = client("ec2", "us-east-1")
    with Stubber(ssm) as ssm_stub, Stubber(ec2) as ec2_stub:
        for name in DLAMI_PARAMETERS:
            ssm_stub.add_client_error("get_parameter", "ParameterNotFound",
                                      expected_params={"Name": name})
        ec2_stub.add_response("describe_images", {"Images": [
            {"ImageId": "ami-0aaaaaaaaaaaaaaa1", "CreationDate": "2026-10-02T10:00:00.000Z",
             "Name": "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20261002"},
            {"ImageId": "ami-0bbbbbbbbbbbbbbb2", "CreationDate": "2026-11-20T10:00:00.000Z",
             "Name": "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20261120"},
        ]}, {"Owners": [DLAMI_OWNER], "Filters": [{"Name": "name", "Values": [DLAMI_NAME]}]})
        ami, source = resolve_dlami(lambda service, region=None: {"ssm": ssm, "ec2": ec2}[service],
                                    "us-east-1")
    assert ami == "ami-0bbbbbbbbbbbbbbb2"
    assert "newest of 2" in source


def _mirror(bucket: str, region: str, *, manifest: bool = True) -> str:
    """A bucket on moto in ``region``, holding R1's manifest as `cache push` leaves it."""
    s3 = client("s3", region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    if manifest:
        s3.put_object(Bucket=bucket, Key="hf/deepseek-ai/DeepSeek-R1/dsinfra-manifest.json",
                      Body=b'{"model": "deepseek-ai/DeepSeek-R1", "files": []}')
    return f"s3://{bucket}/hf"


def test_a_mirror_in_the_stacks_region_passes(aws):
    config = _config(model="deepseek-ai/DeepSeek-R1", modelCache=_mirror("w-east", "us-east-1"))
    report = run_doctor(config, client_factory=StubbedFactory(), pulumi_version=lambda: V)
    mirror = report.get("weights mirror")
    assert mirror.status == "pass", mirror
    assert mirror.data == {"bucket": "w-east", "bucket_region": "us-east-1"}


def test_a_mirror_in_another_region_warns_with_the_nat_charge_per_deploy(aws):
    config = _config(model="deepseek-ai/DeepSeek-R1",
                     modelCache=_mirror("w-west", "eu-west-1"))
    report = run_doctor(config, client_factory=StubbedFactory(), pulumi_version=lambda: V)
    mirror = report.get("weights mirror")
    assert mirror.status == "warn" and mirror.data["bucket_region"] == "eu-west-1"
    # 671 GB (FP8) x 2 nodes x $0.045/GB through the NAT gateway of the distributed tier.
    assert mirror.data["nat_usd_per_deploy"] == pytest.approx(671.0 * 2 * 0.045, abs=0.5)
    assert "is in eu-west-1, not in the stack's region us-east-1" in mirror.detail
    assert f"${mirror.data['nat_usd_per_deploy']:,.2f} per deploy" in mirror.detail
    assert "dsinfra cache push deepseek-ai/DeepSeek-R1" in mirror.fix


def test_a_mirror_without_the_models_manifest_fails_with_the_push_command(aws):
    uri = _mirror("w-empty", "us-east-1", manifest=False)
    config = _config(model="deepseek-ai/DeepSeek-R1", modelCache=uri)
    report = run_doctor(config, client_factory=StubbedFactory(), pulumi_version=lambda: V)
    mirror = report.get("weights mirror")
    assert mirror.status == "fail" and not report.ok
    assert mirror.fix == f"dsinfra cache push deepseek-ai/DeepSeek-R1 --to {uri} --region us-east-1"


def test_no_mirror_no_mirror_check(aws):
    report = run_doctor(_config(), client_factory=StubbedFactory(), pulumi_version=lambda: V)
    assert report.get("weights mirror") is None
