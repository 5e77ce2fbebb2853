"""Issue 23 item 5 on the moto server with AWS's contract patched in (tests/moto_contracts.py):
StopInstances refuses one-time spot with AWS's UnsupportedOperation, stops persistent spot
with interruption behaviour stop, and a budget `stop` on one-time spot is reported failed,
loudly, never a silent `done`."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from .conftest import _spec, hours_later, stack_tags
from .helpers import check, instance_states


def _spot(spot_options: dict | None, **tag_args) -> str:
    from dsinfra.cloud.aws import client

    market = {"MarketType": "spot"}
    if spot_options is not None:
        market["SpotOptions"] = spot_options
    out = client("ec2", "us-east-1").run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="g5.xlarge",
        InstanceMarketOptions=market,
        TagSpecifications=[_spec("instance", stack_tags("spotty", **tag_args))])
    return out["Instances"][0]["InstanceId"]


@pytest.mark.parametrize("options", [None, {"SpotInstanceType": "one-time"}],
                         ids=["default", "one-time"])
def test_the_double_refuses_to_stop_one_time_spot_as_aws_does(aws, options):
    from dsinfra.cloud.aws import client

    instance = _spot(options)
    with pytest.raises(ClientError) as refused:
        client("ec2", "us-east-1").stop_instances(InstanceIds=[instance])
    error = refused.value.response["Error"]
    assert error["Code"] == "UnsupportedOperation"
    assert error["Message"] == (
        f"You can't stop the Spot Instance '{instance}' because it is associated with a "
        "one-time Spot Instance request. You can only stop Spot Instances associated with "
        "persistent Spot Instance requests.")
    assert instance_states([instance]) == {instance: "running"}


def test_persistent_spot_with_stop_is_stopped_by_the_budget_rule(aws, state_dir):
    instance = _spot({"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"},
                     budget_usd=0.01, period="total", on_exceed="stop")
    report = check(hours_later(5), enforce=True)["spotty"]
    assert report["action"] == "stop" and report["action_result"] == "done", report
    assert instance_states([instance]) == {instance: "stopped"}


def test_stop_on_one_time_spot_is_reported_failed_not_done(aws, state_dir):
    instance = _spot(None, budget_usd=0.01, period="total", on_exceed="stop")
    report = check(hours_later(5), enforce=True)["spotty"]
    assert report["action_result"] == "failed" and "UnsupportedOperation" in report["reason"]
    assert instance_states([instance]) == {instance: "running"}
