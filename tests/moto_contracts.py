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


def patch() -> None:
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.responses.instances import InstanceResponse

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
        try:
            return real_run(self)
        finally:
            _launch.spot_type = None

    def add_instances(self, image_id, count, user_data, security_group_names, *args, **kwargs):
        reservation = real_add(self, image_id, count, user_data, security_group_names, *args,
                               **kwargs)
        template = kwargs.get("launch_template")
        data = self._get_template_from_args(template).data if template else None
        spot_type = _spot_type_of(getattr(_launch, "spot_type", None), data)
        for instance in reservation.instances:
            instance.dsinfra_spot_type = spot_type
            if spot_type:
                instance.lifecycle = "spot"
        return reservation

    def stop_instances(self, instance_ids):
        for instance in self.get_multi_instances_by_id(instance_ids):
            if getattr(instance, "dsinfra_spot_type", None) == "one-time":
                raise UnsupportedOperation(instance.id)
        return real_stop(self, instance_ids)

    InstanceResponse.run_instances = run_instances
    InstanceBackend.run_instances = add_instances
    InstanceBackend.stop_instances = stop_instances


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
    fast_ids()
    from moto.server import main

    main(args)
