"""The moto server with the AWS contracts moto does not enforce, patched into its EC2 backend
in the server process (tests/motoserver.py starts this file in place of ``moto_server``).

Contract 1: StopInstances refuses a spot instance launched by a one-time request.
  AWS: "You can't stop the Spot Instance associated with a one-time Spot Instance request.
  You can only stop Spot Instances associated with persistent Spot Instance requests."
  (AWS EC2 User Guide, spot-requests.html#stopping-a-spot-instance, quoted in
  github.com/diodonfrost/terraform-aws-lambda-scheduler-stop-start/issues/6). The error AWS
  sends, as recorded in github.com/cloud-custodian/cloud-custodian/issues/8003:
  ``UnsupportedOperation``: "You can't stop the Spot Instance 'i-06a78b0c244a12343' because
  it is associated with a one-time Spot Instance request. You can only stop Spot Instances
  associated with persistent Spot Instance requests."
  The request type comes from RunInstances' InstanceMarketOptions.SpotOptions, or from the
  launch template's; AWS's default SpotInstanceType is ``one-time`` (API reference,
  SpotMarketOptions). moto 5.2 keeps only the market type and stops any instance.

Contract 2: RunInstances with spot market options makes a Spot Instance request, as
RequestSpotInstances does: the instance names it (DescribeInstances' SpotInstanceRequestId, "If
the request is a Spot Instance request, the ID of the request", API reference, Instance) and
DescribeSpotInstanceRequests lists it with the type and interruption behaviour asked for, tagged
with the launch's ``spot-instances-request`` tag specification. A persistent one outlives its
instance (hashicorp/terraform-provider-aws#38142: "aws_instance instance_market_options:
Persistent type creates untracked resource"; fastai/fastec2#14: a terminated instance's
persistent request launched another). moto 5.2 makes no request and leaves the id empty.

Contract 3: CancelSpotInstanceRequests leaves the request, in state ``cancelled`` (EC2 API
reference, CancelledSpotInstanceRequest: state "active | open | closed | cancelled |
completed"; EC2 User Guide, using-spot-instances-cancel: "You can only cancel Spot Instance
requests that are open, active, or disabled", and using-spot-instances-request.html
#stopping-a-spot-instance: "You can't stop a Spot Instance if the associated Spot Instance
request is cancelled. When the Spot Instance request is cancelled, you can only terminate the
Spot Instance"). moto 5.2 deletes it.

Contract 4: a launch's block device mapping for the image's root device name replaces the
root volume; it does not add a second volume at the same device (EC2 User Guide, "Block device
mappings for volumes on Amazon EC2 instances": a launch's mapping overrides the AMI's entry
for that device, which is how a larger or encrypted root volume is asked for; an instance has
one volume per device name). moto 5.2, launching from a launch template (RunInstances with
LaunchTemplate, and every Auto Scaling group launch), attaches its own 8 GiB unencrypted
default root volume and the template's root volume both at /dev/sda1.

Contract 5: an Auto Scaling group whose ``Launch`` process is suspended launches nothing:
SetDesiredCapacity records the new desired capacity (and still terminates on a decrease, as
``Terminate`` is its own process), and resuming ``Launch`` brings the group to it at once
(EC2 Auto Scaling User Guide, "Suspend and resume Amazon EC2 Auto Scaling processes": Launch
is what adds instances when the group scales out; "How suspended processes affect other
processes": with Launch suspended ReplaceUnhealthy terminates without launching replacements,
and when Launch resumes the group immediately replaces what it terminated meanwhile). moto 5.2
records the suspension and launches anyway.

Contract 6: SetDesiredCapacity above the group's MaxSize is refused, ``ValidationError``: "New
SetDesiredCapacity value 3 is above max value 2 for the AutoScalingGroup." (the answer AWS
gave, recorded in kubernetes/autoscaler#943). moto 5.2 takes any value and launches to it.

Contract 7: CreateLaunchTemplateVersion with ``SourceVersion`` starts from that version's data:
"If you specify this parameter, the new version inherits the launch parameters from the source
version. If you specify additional launch parameters for the new version, they overwrite any
corresponding launch parameters inherited from the source version." (EC2 API reference,
CreateLaunchTemplateVersion, SourceVersion). moto 5.2 ignores SourceVersion and keeps the new
version's ``UserData`` as a plain string, which its Auto Scaling launch then refuses (an
AssertionError in LaunchTemplateVersion.user_data: HTTP 500); rolling deploys (ops/deploy.py)
make new versions from the group's one.
"""

from __future__ import annotations

import sys
import threading

_launch = threading.local()


def _spot_type_of(params_type, template_data) -> str | None:
    if params_type:
        return params_type
    market = (template_data or {}).get("InstanceMarketOptions") or {}
    if market.get("MarketType") == "spot":
        return (market.get("SpotOptions") or {}).get("SpotInstanceType") or "one-time"
    return None


def _template_tags(data) -> dict:
    for spec in (data or {}).get("TagSpecifications") or []:
        if spec.get("ResourceType") == "spot-instances-request":
            return {t["Key"]: t["Value"] for t in spec.get("Tags") or []}
    return {}


def patch() -> None:
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.models.spot_requests import SpotRequestBackend
    from moto.ec2.responses.instances import InstanceResponse
    from moto.ec2.utils import random_spot_request_id

    class InvalidSpotRequest(EC2ClientError):
        def __init__(self, request_id: str) -> None:
            super().__init__("InvalidSpotInstanceRequestID.NotFound",
                             f"The spot instance request ID '{request_id}' does not exist")

    class RunInstancesSpotRequest(TaggedEC2Resource):
        """The request a spot RunInstances makes (contract 2), as DescribeSpotInstanceRequests
        shows it; ``state`` goes to ``cancelled`` when cancelled (contract 3)."""

        __module__ = "moto.ec2.models.spot_requests"  # moto's model registry keys on it

        def __init__(self, backend, instance, spot_type, behaviour, tags) -> None:
            super().__init__()
            self.ec2_backend = backend
            self.id = random_spot_request_id()
            self.instance = instance
            self.type = spot_type
            self.state = "active"
            self.status = {"Code": "fulfilled", "Message": "Your spot request is fulfilled."}
            self.instance_interruption_behavior = behaviour
            self.launch_group = self.availability_zone_group = None
            self.product_description = "Linux/UNIX"
            self.add_tags(tags or {})

        @property
        def spot_instance_request_id(self) -> str:
            return self.id

        @property
        def instance_id(self) -> str:
            return self.instance.id

        def get_filter_value(self, filter_name, method_name=None):
            if filter_name == "state":
                return self.state
            if filter_name == "instance-id":
                return self.instance.id
            if filter_name == "spot-instance-request-id":
                return self.id
            return super().get_filter_value(filter_name, "DescribeSpotInstanceRequests")

    class UnsupportedOperation(EC2ClientError):
        def __init__(self, instance_id: str) -> None:
            super().__init__(
                "UnsupportedOperation",
                f"You can't stop the Spot Instance '{instance_id}' because it is associated "
                "with a one-time Spot Instance request. You can only stop Spot Instances "
                "associated with persistent Spot Instance requests.")

    real_run, real_add, real_stop = (InstanceResponse.run_instances,
                                     InstanceBackend.run_instances,
                                     InstanceBackend.stop_instances)

    def run_instances(self):
        market = self._get_param("InstanceMarketOptions.MarketType")
        _launch.spot_type = (self._get_param(
            "InstanceMarketOptions.SpotOptions.SpotInstanceType") or "one-time") \
            if market == "spot" else None
        _launch.behaviour = self._get_param(
            "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior")
        _launch.request_tags = self._parse_tag_specification().get("spot-instances-request")
        try:
            return real_run(self)
        finally:
            _launch.spot_type = _launch.behaviour = _launch.request_tags = None

    def add_instances(self, image_id, count, user_data, security_group_names, *args, **kwargs):
        reservation = real_add(self, image_id, count, user_data, security_group_names, *args,
                               **kwargs)
        template = kwargs.get("launch_template")
        data = self._get_template_from_args(template).data if template else None
        spot_type = _spot_type_of(getattr(_launch, "spot_type", None), data)
        options = ((data or {}).get("InstanceMarketOptions") or {}).get("SpotOptions") or {}
        behaviour = getattr(_launch, "behaviour", None) or \
            options.get("InstanceInterruptionBehavior") or "terminate"
        tags = getattr(_launch, "request_tags", None) or _template_tags(data)
        for instance in reservation.instances:
            _drop_shadowed_volumes(self, instance)
            instance.dsinfra_spot_type = spot_type
            if spot_type:
                instance.lifecycle = "spot"
                request = RunInstancesSpotRequest(self, instance, spot_type, behaviour, tags)
                self.spot_instance_requests[request.id] = request
                instance.spot_instance_request_id = request.id
        return reservation

    def stop_instances(self, instance_ids):
        for instance in self.get_multi_instances_by_id(instance_ids):
            if getattr(instance, "dsinfra_spot_type", None) == "one-time":
                raise UnsupportedOperation(instance.id)
        return real_stop(self, instance_ids)

    def cancel_spot_instance_requests(self, request_ids):
        cancelled = []
        for request_id in request_ids:
            request = self.spot_instance_requests.get(request_id)
            if request is None:
                raise InvalidSpotRequest(request_id)
            request.state = "cancelled"
            cancelled.append(request)
        return cancelled

    from moto.ec2.responses.launch_templates import LaunchTemplates
    from moto.ec2.utils import parse_user_data

    real_version = LaunchTemplates.create_launch_template_version

    def create_launch_template_version(self):
        source = self._get_param("SourceVersion")
        name, template_id = self._get_param("LaunchTemplateName"), \
            self._get_param("LaunchTemplateId")
        template = self.ec2_backend.get_launch_template_by_name(name) if name else \
            self.ec2_backend.get_launch_template(template_id)
        base = dict(template.get_version(source).data) if source else {}
        given = self._get_param("LaunchTemplateData", {})
        if "UserData" in given:
            given["UserData"] = parse_user_data(given["UserData"])
        real_get = self._get_param

        def merged(key, default=None):
            return {**base, **given} if key == "LaunchTemplateData" else real_get(key, default)

        self._get_param = merged
        try:
            return real_version(self)
        finally:
            del self._get_param

    LaunchTemplates.create_launch_template_version = create_launch_template_version
    InstanceResponse.run_instances = run_instances
    InstanceBackend.run_instances = add_instances
    InstanceBackend.stop_instances = stop_instances
    SpotRequestBackend.cancel_spot_instance_requests = cancel_spot_instance_requests


def _drop_shadowed_volumes(backend, instance) -> None:
    """Contract 4: the volumes attached to ``instance`` that its block device mapping no longer
    names (a default root volume a launch's mapping replaced) were never AWS's."""
    mapped = {block.volume_id for block in instance.block_device_mapping.values()}
    for volume in list(backend.volumes.values()):
        attachment = volume.attachment
        if attachment is not None and attachment.instance is instance and \
                volume.id not in mapped:
            volume.attachment = None
            backend.volumes.pop(volume.id, None)


def patch_autoscaling() -> None:
    """Contracts 5 and 6 in moto's Auto Scaling backend."""
    from moto.autoscaling.exceptions import ValidationError
    from moto.autoscaling.models import AutoScalingBackend, FakeAutoScalingGroup

    real_group_set = FakeAutoScalingGroup.set_desired_capacity
    real_set, real_resume = (AutoScalingBackend.set_desired_capacity,
                             AutoScalingBackend.resume_processes)

    def group_set(self, new_capacity):
        if "Launch" not in (getattr(self, "_suspended_processes", None) or ()):
            return real_group_set(self, new_capacity)
        wanted = self.min_size if new_capacity is None else new_capacity
        if wanted < len(self.active_instances()):
            return real_group_set(self, wanted)  # Terminate still runs
        self.desired_capacity = wanted  # recorded; nothing launches (contract 5)
        return None

    def set_desired_capacity(self, group_name, desired_capacity):
        group = self.autoscaling_groups[group_name]
        if desired_capacity is not None and desired_capacity > group.max_size:
            raise ValidationError(f"New SetDesiredCapacity value {desired_capacity} is above "
                                  f"max value {group.max_size} for the AutoScalingGroup.")
        return real_set(self, group_name, desired_capacity)

    def resume_processes(self, group_name, scaling_processes):
        group = self.autoscaling_groups[group_name]
        was_held = "Launch" in (group._suspended_processes or ())
        real_resume(self, group_name, scaling_processes)
        # Only resuming Launch itself catches up with the desired capacity; resuming any other
        # process launches nothing (and must not make moto re-register every member).
        if was_held and "Launch" not in (group._suspended_processes or ()):
            group.set_desired_capacity(group.desired_capacity)

    FakeAutoScalingGroup.set_desired_capacity = group_set
    AutoScalingBackend.set_desired_capacity = set_desired_capacity
    AutoScalingBackend.resume_processes = resume_processes


def fast_tags() -> None:
    """Not a contract, a speed-up: one resource's tags looked up by its id, as AWS serves
    them, instead of moto 5.2's scan of every tag in the region for each resource it renders
    (DescribeInstances and DescribeVolumes ask once per resource, so a listing cost grew with
    the square of the resources: 5.9 s for 1,000 instances and 4.8 s for their volumes in
    bench/bench_cost_check.py). Only an exact single ``resource-id`` filter takes the index;
    anything else (wildcards, several ids, other filters) goes to moto's own scan. The answer
    is the same list in the same order (tests/test_moto_fixture.py compares them)."""
    from moto.ec2.models.tags import TagBackend
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    scan = TagBackend.describe_tags

    def describe_tags(self, filters=None):
        ids = (filters or {}).get("resource-id")
        if filters and set(filters) == {"resource-id"} and len(ids) == 1 \
                and not any(c in ids[0] for c in "*?\\"):
            rid = ids[0]
            return [{"resource_id": rid, "key": key, "value": value,
                     "resource_type": EC2_PREFIX_TO_RESOURCE.get(get_prefix(rid), "")}
                    for key, value in dict(self.tags.get(rid, {})).items()]
        return scan(self, filters)

    describe_tags.scan = scan  # moto's own, for the test that compares
    TagBackend.describe_tags = describe_tags


def fast_ids() -> None:
    """Not a contract, a speed-up: moto's EC2 ids drawn from the same generator (its seedable
    ``mock_random``) and alphabet (lowercase hex), one ``getrandbits`` per id instead of one
    ``random.choice`` per character. Each EC2 backend moto creates (per region, again after
    every test's reset) registers its ~1,400 default AMIs, each with a snapshot and volume:
    the per-character draws were over half of that start, paid by every test that touched
    EC2 and once per region by every multi-region check."""
    import moto.ec2.utils as ec2_utils

    source = ec2_utils.random

    def random_resource_id(size: int = 8) -> str:
        return f"{source.getrandbits(4 * size):0{size}x}"

    ec2_utils.random_resource_id = random_resource_id


# Services the checks call that moto 5.2 does not have: moto answers them with its own crash
# (HTTP 500, an HTML page), which botocore's standard retry mode takes as transient and sends
# again, 8 attempts with backoff: about 7 s per check that prices a type the catalog lacks.
LACKING = ("pricing",)


def lacking_services_answer_at_once() -> None:
    """Not a contract, the double saying what it lacks: a request for a service in ``LACKING``
    gets HTTP 501 with a JSON error naming moto, which botocore does not retry (its transient
    statuses are 500, 502, 503 and 504: botocore/retries/standard.py). The code under test
    sees what it sees when that API cannot be reached: a ClientError, handled as an unreadable
    price (tests that need Pricing's answers use botocore's Stubber)."""
    import json

    from cost.proxy import scope_of  # this file runs from tests/ (tests/motoserver.py)
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    dispatch = DomainDispatcherApplication.__call__

    def __call__(self, environ, start_response):  # noqa: ANN001 - WSGI's signature
        _, service = scope_of({"Authorization": environ.get("HTTP_AUTHORIZATION")})
        if service in LACKING:
            body = json.dumps({"__type": "NotImplemented", "message":
                               f"the test lab's moto has no {service} API"}).encode()
            start_response("501 Not Implemented", [
                ("Content-Type", "application/x-amz-json-1.1"),
                ("Content-Length", str(len(body)))])
            return [body]
        return dispatch(self, environ, start_response)

    DomainDispatcherApplication.__call__ = __call__


def fast_reset() -> None:
    """Not a contract, a speed-up: ``/moto-api/reset`` drops each service's backends without
    building every one of them again first. moto 5.2's ``BackendDict.reset`` re-ran each
    region backend's ``__init__`` (for EC2, its ~1,400 default AMIs with their snapshots and
    volumes: 0.1 s of the 0.09-0.2 s a reset took) and then cleared the dict that held them,
    so nothing could reach the rebuilt ones; the next request builds a fresh backend on
    demand, as it did. A backend with a reset of its own still gets it: S3's releases its
    bucket names from the registry shared across accounts (without it, CreateBucket of a name
    an earlier test used failed with HTTP 500), Batch's stops its jobs. Every test resets
    (tests/conftest.py ``aws``), so this was paid about a thousand times per suite.
    tests/test_moto_fixture.py checks a reset still empties every region and service."""
    from moto.core.base_backend import BackendDict, BaseBackend, backend_lock

    def reset(cls) -> None:
        with backend_lock:
            for backend in BackendDict._instances:
                for account_specific in backend.values():
                    for region_backend in account_specific.values():
                        if type(region_backend).reset is not BaseBackend.reset:
                            region_backend.reset()
                backend.clear()
            BackendDict._instances.clear()

    BackendDict.reset = classmethod(reset)


def freeze_clock(at: str) -> None:
    """moto's clock stands still at ``at`` (ISO 8601, UTC): resources made one after another
    carry the same timestamps (tests/motoserver.py start(frozen_at=))."""
    import datetime

    import moto.core.utils

    frozen = datetime.datetime.fromisoformat(at).replace(tzinfo=None)
    moto.core.utils.utcnow = lambda: frozen


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--frozen-at"]:
        freeze_clock(args[1])
        args = args[2:]
    patch()
    patch_autoscaling()
    fast_ids()
    fast_tags()
    lacking_services_answer_at_once()
    fast_reset()
    from moto.server import main

    main(args)
