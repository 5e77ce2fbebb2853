"""Run the real Pulumi program in-process under the SDK's mock monitor: no credentials, no CLI.

The mock monitor records every resource the program registers (type token, name, inputs,
parent) and answers the two lookups the program makes (availability zones, AMI SSM
parameters) with plausible values. Each run happens in a fresh ``contextvars.Context`` because
the Pulumi runtime keeps its settings, config and root stack in context variables: a second
run in the same process (plan dev, then plan prod) starts from a clean runtime.
"""

from __future__ import annotations

import contextvars
import hashlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any

PROJECT = "dsinfra"
MOCK_ACCOUNT = "123456789012"
_ID_PREFIX = {
    "aws:ec2/instance:Instance": "i", "aws:ec2/vpc:Vpc": "vpc", "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/securityGroup:SecurityGroup": "sg", "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/natGateway:NatGateway": "nat", "aws:ec2/eip:Eip": "eipalloc",
    "aws:ec2/routeTable:RouteTable": "rtb", "aws:ec2/launchTemplate:LaunchTemplate": "lt",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce", "aws:ec2/placementGroup:PlacementGroup": "pg",
    "aws:ec2/keyPair:KeyPair": "key",
    "aws:ec2transitgateway/instanceConnectEndpoint:InstanceConnectEndpoint": "eice",
}


@dataclass(frozen=True)
class RecordedResource:
    type: str  # Pulumi type token, e.g. aws:ec2/instance:Instance
    name: str
    inputs: dict[str, Any]
    urn: str
    parent: str  # the parent's URN ("" at the top)
    custom: bool  # False for components
    id: str = ""  # the id the mock handed out
    ignore_changes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "inputs": self.inputs}


@dataclass
class OfflineRun:
    resources: list[RecordedResource]
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, token: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == token]


def run_offline(stack: str, values: dict[str, Any], program=None) -> OfflineRun:
    """Run the program for ``stack`` with these ``dsinfra:*`` values (namespace stripped);
    ``program`` replaces the stack program's ``main`` (the guard's, for ``iam-policy``)."""
    return contextvars.Context().run(_run, stack, values, program)


def mocked_ami(region: str, parameter: str) -> str:
    """The AMI id an offline plan gets for an AMI SSM parameter: tells a plan's images apart
    (the DLAMI's, Ubuntu's) without AWS."""
    return "ami-" + hashlib.sha256(f"{region}{parameter}".encode()).hexdigest()[:17]


def pulumi_config_text(values: dict[str, Any]) -> dict[str, str]:
    """Config as the Pulumi engine passes it to a program: text, structured values as JSON."""
    return {f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v)
            for k, v in values.items()}


def _run(stack: str, values: dict[str, Any], program_main=None) -> OfflineRun:
    import pulumi
    from pulumi.runtime.config import set_all_config
    from pulumi.runtime.settings import SETTINGS, get_root_resource
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    from dsinfra.infra.program import main
    from dsinfra.testpoints import pause_at

    region = values.get("region") if isinstance(values.get("region"), str) else "us-east-1"
    mocks = _RecordingMocks(region)
    monitor = _recording_monitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False,
                             monitor=monitor)
    set_all_config(pulumi_config_text(values))
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()
    resolved: dict[str, Any] = {}

    def program() -> None:
        (program_main or main)()
        pause_at("program-run")  # a test's Ctrl-C here (dsinfra/testpoints.py); else nothing
        stack_outputs = get_root_resource().outputs
        resolved.update(_sync_await(pulumi.Output.from_input(stack_outputs).future()) or {})

    _sync_await(run_pulumi_func(program))
    return OfflineRun(resources=sorted(monitor.records, key=_display_order),
                      outputs=resolved)


def _display_order(record: RecordedResource) -> tuple[int, int, str]:
    """Provider first, then each component with its children, in the order the program
    creates them (registration order itself varies from run to run: it is asynchronous)."""
    from dsinfra.infra.program import COMPONENT_ORDER

    chain = record.urn.split("::")[2].split("$")
    component = next((t for t in chain if t in COMPONENT_ORDER), None)
    rank = COMPONENT_ORDER.index(component) + 1 if component else 0
    if record.type.startswith("pulumi:providers:"):
        rank = -1
    return rank, int(record.custom), record.urn


def _recording_monitor(mocks: "_RecordingMocks"):
    from pulumi.runtime.mocks import MockMonitor

    class RecordingMonitor(MockMonitor):
        """MockMonitor that also keeps what was registered, with its parent."""

        def __init__(self) -> None:
            super().__init__(mocks)
            self.records: list[RecordedResource] = []

        def RegisterResource(self, request):  # noqa: N802 - gRPC method name
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                inputs = mocks.inputs_of.pop((request.type, request.name), {})
                self.records.append(RecordedResource(
                    type=request.type, name=request.name, inputs=inputs, urn=response.urn,
                    parent=request.parent or "", custom=bool(request.custom), id=response.id,
                    ignore_changes=tuple(request.ignoreChanges)))
            return response

    return RecordingMonitor()


class _RecordingMocks:
    """Plausible provider answers: ids, ARNs, addresses, DNS names, AZs, AMIs."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.inputs_of: dict[tuple[str, str], dict[str, Any]] = {}
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    # pulumi.runtime.Mocks is an ABC; duck typing keeps `import pulumi` out of module import.
    def new_resource(self, args) -> tuple[str, dict[str, Any]]:
        inputs = _plain(args.inputs)
        self.inputs_of[(args.typ, args.name)] = inputs
        with self._lock:
            n = next(self._counter)
        resource_id = f"{_ID_PREFIX.get(args.typ, args.name)}-{n:017x}"
        return resource_id, {**inputs, **self._computed(args.typ, args.name, inputs, n)}

    def _computed(self, token: str, name: str, inputs: dict[str, Any], n: int) -> dict[str, Any]:
        service = token.split(":")[1].split("/")[0]
        out: dict[str, Any] = {"arn": f"arn:aws:{service}:{self.region}:{MOCK_ACCOUNT}:{name}"}
        if token == "aws:ec2/instance:Instance":
            out["privateIp"] = f"10.42.{n // 250}.{n % 250 + 4}"
            out["publicIp"] = f"198.51.100.{n % 250 + 1}" \
                if inputs.get("associatePublicIpAddress") else ""
        elif token == "aws:ec2/launchTemplate:LaunchTemplate":
            out["latestVersion"] = 1
        elif token == "aws:lb/loadBalancer:LoadBalancer":
            scheme = "internal-" if inputs.get("internal") else ""
            out["dnsName"] = f"{scheme}{name}-{n:010d}.elb.{self.region}.amazonaws.com"
        elif token == "aws:ec2transitgateway/instanceConnectEndpoint:InstanceConnectEndpoint":
            # The shape of the DnsName in the CreateInstanceConnectEndpoint API reference.
            out["dnsName"] = (f"eice-{n:017x}.{n:08x}.ec2-instance-connect-endpoint."
                              f"{self.region}.amazonaws.com")
        elif token == "aws:ec2/eip:Eip":
            out["publicIp"] = f"198.51.100.{n % 250 + 1}"
        elif token == "aws:ec2/keyPair:KeyPair":
            out["keyName"] = name
        elif token in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile",
                       "aws:ec2/placementGroup:PlacementGroup",
                       "aws:autoscaling/group:Group"):  # a group's id is its name
            out["name"] = name
        return out

    def call(self, args) -> tuple[dict[str, Any], list]:
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            letters = "abcdef"
            return {"id": self.region, "names": [f"{self.region}{c}" for c in letters],
                    "zoneIds": [f"use1-az{i}" for i in range(1, len(letters) + 1)],
                    "groupNames": [self.region] * len(letters)}, []
        if args.token == "aws:ssm/getParameter:getParameter":
            name = args.args["name"]
            ami = mocked_ami(self.region, name)
            return {"id": name, "name": name, "type": "String", "value": ami,
                    "insecureValue": ami, "version": 1, "withDecryption": True,
                    "arn": f"arn:aws:ssm:{self.region}::parameter{name}"}, []
        raise RuntimeError(f"the offline plan has no answer for the lookup {args.token}")

    def register_transform(self, transform) -> None:  # noqa: ARG002 - no transforms here
        return None

    def register_invoke_transform(self, transform) -> None:  # noqa: ARG002
        return None


def _plain(value: Any) -> Any:
    """JSON-ready copy of deserialized inputs (protobuf hands every number over as a float)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
