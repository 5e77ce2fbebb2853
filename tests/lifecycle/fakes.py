"""Test doubles at the edges `up` cannot reach here: the Pulumi engine (no CLI on this machine,
no AWS capacity to exhaust) and AWS calls moto does not serve (Service Quotas for ec2, the
public DLAMI SSM parameter), answered through botocore's Stubber with recorded shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.stub import Stubber

from dsinfra.cloud.aws import client as aws_client
from dsinfra.cloud.preflight import DLAMI_PARAMETERS
from dsinfra.errors import CloudError
from dsinfra.infra.automation import PreviewResult

CAPACITY_MESSAGE = (
    "pulumi up failed for stack {stack!r}: error: 1 error occurred:\n"
    "    * creating EC2 Instance: operation error EC2: RunInstances, https response error "
    "StatusCode: 500, RequestID: 0f1e, api error InsufficientInstanceCapacity: We currently do "
    "not have sufficient {itype} capacity in the Availability Zone you requested ({zone}). Our "
    "system will be working on provisioning additional capacity.")


class FakeEngine:
    """Implements the `Engine` protocol of infra/automation.py: records every call, keeps the
    stack config it was given, answers `up` with outputs in the `dsinfra.outputs` shape, and
    fails with AWS's InsufficientInstanceCapacity text in the zones it is told to."""

    def __init__(self, *, no_capacity_in: tuple[str, ...] = (), instance_type: str = "g5.2xlarge",
                 endpoint: str = "http://203.0.113.10:8000", fail_with: str | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.config: dict[str, str] = {}
        self.no_capacity_in = set(no_capacity_in)
        self.instance_type = instance_type
        self.endpoint = endpoint
        self.fail_with = fail_with
        self.deployed = False

    def preview(self, stack: str, on_event=None) -> PreviewResult:
        self.calls.append(("preview", stack))
        return PreviewResult(change_summary={"create": 3})

    def up(self, stack: str, on_event=None) -> dict[str, Any]:
        zone = self.config.get("dsinfra:availabilityZone", "")
        self.calls.append(("up", stack, zone))
        for name, kind in (("vpc", "aws:ec2/vpc:Vpc"), ("gpu-0", "aws:ec2/instance:Instance")):
            if on_event:
                on_event({"kind": "resource_pre_event", "type": kind, "op": "OpType.CREATE",
                          "urn": f"urn:pulumi:{stack}::dsinfra::{kind}::{name}"})
            if kind.endswith("Instance") and (zone in self.no_capacity_in or self.fail_with):
                if on_event:
                    on_event({"kind": "res_op_failed_event", "type": kind,
                              "urn": f"urn:pulumi:{stack}::dsinfra::{kind}::{name}"})
                raise CloudError(self.fail_with or CAPACITY_MESSAGE.format(
                    stack=stack, itype=self.instance_type, zone=zone))
            if on_event:
                on_event({"kind": "res_outputs_event", "type": kind, "op": "OpType.CREATE",
                          "urn": f"urn:pulumi:{stack}::dsinfra::{kind}::{name}"})
        self.deployed = True
        return self.outputs(stack)

    def destroy(self, stack: str, on_event=None) -> None:
        self.calls.append(("destroy", stack))
        self.deployed = False

    def outputs(self, stack: str) -> dict[str, Any]:
        if not self.deployed:
            return {}
        return {"nodes": [{"id": "i-0abc", "role": "head", "private_ip": "10.0.1.10",
                           "public_ip": "203.0.113.10", "instance_type": self.instance_type}],
                "bastion": None, "endpoint": self.endpoint, "ssh_user": "ubuntu",
                "region": "us-east-1"}

    def set_config(self, stack: str, key: str, value: str) -> None:
        self.calls.append(("set_config", stack, key, value))
        self.config[key] = value


class FakeBootstrap:
    """Stands in for dsinfra.bootstrap.runner.bootstrap_stack (SSH to GPU hosts)."""

    def __init__(self, fail_step: str | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_step = fail_step

    def __call__(self, config, outputs, *, ssh_key_path=None, trust_on_first_use=False,
                 progress=None, read_console=None):
        from dsinfra.bootstrap.plan import BootstrapReport, HostResult, StepResult

        self.calls.append({"stack": config.stack, "nodes": [n.id for n in outputs.nodes],
                           "ssh_key_path": ssh_key_path, "tofu": trust_on_first_use,
                           "read_console": read_console})
        if progress:
            progress("engine container started on i-0abc")
        hosts = []
        for node in outputs.nodes:
            steps = [StepResult("docker", "applied", 1.0)]
            if self.fail_step:
                steps.append(StepResult(self.fail_step, "failed", 0.5, detail="exit 100",
                                        command="apt-get install -y nvidia-container-toolkit",
                                        output_tail="E: Unable to locate package"))
            hosts.append(HostResult(node.id, node.private_ip, node.role, node.instance_type,
                                    None, steps))
        return BootstrapReport(config.stack, "/tmp/run", outputs.endpoint, hosts)


# Recorded response shapes (trimmed) from AWS for calls moto does not answer.
def quota_response(code: str, value: float) -> dict[str, Any]:
    return {"Quota": {"ServiceCode": "ec2", "ServiceName": "Amazon Elastic Compute Cloud "
                      "(Amazon EC2)", "QuotaCode": code, "QuotaName": "Running On-Demand "
                      "instances", "Value": value, "Unit": "None", "Adjustable": True,
                      "GlobalQuota": False,
                      "QuotaArn": f"arn:aws:servicequotas:us-east-1:123456789012:ec2/{code}"}}


def dlami_parameter_response(ami: str = "ami-0123456789abcdef0") -> dict[str, Any]:
    return {"Parameter": {"Name": DLAMI_PARAMETERS[0], "Type": "String", "Value": ami,
                          "Version": 97, "LastModifiedDate": datetime(2026, 11, 20),
                          "ARN": f"arn:aws:ssm:us-east-1::parameter{DLAMI_PARAMETERS[0]}",
                          "DataType": "aws:ec2:image"}}


class StubbedFactory:
    """Real moto-server clients, except Service Quotas and SSM which answer from Stubber."""

    def __init__(self, quota_value: float | None = 384, dlami: str | None = "ami-0123456789abcdef0",
                 expect_quota_code: str | None = None) -> None:
        self.quota_value = quota_value
        self.expect_quota_code = expect_quota_code
        self.dlami = dlami
        self.stubbers: list[Stubber] = []

    def __call__(self, service: str, region: str | None = None):
        made = aws_client(service, region)
        if service == "service-quotas":
            stub = Stubber(made)
            if self.quota_value is None:
                stub.add_client_error("get_service_quota", "NoSuchResourceException")
                stub.add_client_error("get_aws_default_service_quota", "NoSuchResourceException")
            else:
                code = self.expect_quota_code
                stub.add_response("get_service_quota", quota_response(code or "L-417A185B",
                                                                      self.quota_value),
                                  {"ServiceCode": "ec2", "QuotaCode": code} if code else None)
            stub.activate()
            self.stubbers.append(stub)
        if service == "ssm":
            stub = Stubber(made)
            if self.dlami:
                stub.add_response("get_parameter", dlami_parameter_response(self.dlami),
                                  {"Name": DLAMI_PARAMETERS[0]})
            else:
                for name in DLAMI_PARAMETERS:
                    stub.add_client_error("get_parameter", "ParameterNotFound",
                                          expected_params={"Name": name})
            stub.activate()
            self.stubbers.append(stub)
        return made


def create_guard_table(name: str, region: str) -> None:
    """The guard's DynamoDB table (infra/guard.py: pk/sk string keys), in the moto server,
    where the guard's heartbeat is read from; kept when it already exists (an update)."""
    from dsinfra.cloud.aws import client

    ddb = client("dynamodb", region)
    try:
        ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}])
    except ddb.exceptions.ResourceInUseException:
        pass


class FakeGuardEngine:
    """The guard's engine (cli/guard.py's ``make_engine``) at the Automation API seam: records
    set_config/up and answers the outputs the guard program exports (ops/guard_program)."""

    def __init__(self, existing: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.config: dict[str, str] = {}
        self.existing = existing or {}

    def outputs(self, stack: str) -> dict[str, Any]:
        return dict(self.existing)

    def set_config(self, stack: str, key: str, value: str) -> None:
        self.calls.append(("set_config", stack, key, value))
        self.config[key] = value

    def up(self, stack: str, on_event=None) -> dict[str, Any]:
        import json

        self.calls.append(("up", stack))
        regions = json.loads(self.config["dsinfra-guard:regions"])
        create_guard_table("dsinfra-guard", regions[0])  # as the program's `up` creates it
        self.existing = {"function_name": "dsinfra-guard-fn", "table_name": "dsinfra-guard",
                         "schedule_name": "dsinfra-guard-schedule",
                         "regions": json.loads(self.config["dsinfra-guard:regions"]),
                         "every_minutes": int(self.config["dsinfra-guard:everyMinutes"]),
                         "enforce": self.config["dsinfra-guard:enforce"] == "true"}
        return dict(self.existing)
