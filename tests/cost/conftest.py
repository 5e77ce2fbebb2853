"""Fixtures of the cost area: a state dir per test, and helpers that create dsinfra stacks in
the moto server the way `dsinfra up` tags them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dsinfra import tags as T


def stack_tags(stack: str, budget_usd: float = 100.0, on_exceed: str = "notify",
               protect: bool = False, period: str = "month", warn_at: float = 0.8,
               expires_at: datetime | None = None, tier: str = "dev") -> dict[str, str]:
    tags = {"Name": f"{stack}-node", T.STACK: stack, T.TIER: tier,
            T.BUDGET_USD: f"{budget_usd:.2f}", T.BUDGET_PERIOD: period, T.ON_EXCEED: on_exceed,
            T.WARN_AT: f"{warn_at:g}", T.PROTECT: "true" if protect else "false",
            T.OWNER: "tests"}
    if expires_at is not None:
        tags[T.EXPIRES_AT] = T.format_expiry(expires_at)
    return tags


def _spec(resource_type: str, tags: dict[str, str]) -> dict:
    return {"ResourceType": resource_type, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


def make_stack(stack: str, *, nodes: int = 1, instance_type: str = "g5.2xlarge",
               region: str = "us-east-1", eip: bool = False, extra_volume_gib: int = 0,
               **tag_args) -> dict:
    """Instances (+ tagged root volumes), optionally an Elastic IP and a detached data volume."""
    from dsinfra.cloud.aws import client

    ec2, tags = client("ec2", region), stack_tags(stack, **tag_args)
    out = ec2.run_instances(ImageId="ami-12c6146b", MinCount=nodes, MaxCount=nodes,
                            InstanceType=instance_type,
                            TagSpecifications=[_spec("instance", tags), _spec("volume", tags)])
    ids = [i["InstanceId"] for i in out["Instances"]]
    made = {"instances": ids}
    if eip:
        alloc = ec2.allocate_address(Domain="vpc",
                                     TagSpecifications=[_spec("elastic-ip", tags)])
        ec2.associate_address(AllocationId=alloc["AllocationId"], InstanceId=ids[0])
        made["address"] = alloc["AllocationId"]
    if extra_volume_gib:
        vol = ec2.create_volume(Size=extra_volume_gib, AvailabilityZone=f"{region}a",
                                VolumeType="gp3", TagSpecifications=[_spec("volume", tags)])
        made["volume"] = vol["VolumeId"]
    return made


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    path = tmp_path / "state"
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(path))
    monkeypatch.delenv("DSINFRA_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("DSINFRA_SNS_TOPIC_ARN", raising=False)
    return path


def hours_later(hours: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(hours=hours)


@pytest.fixture
def webhook(monkeypatch):
    """A loopback receiver that the check's notices go to (DSINFRA_WEBHOOK_URL)."""
    from .helpers import WebhookReceiver

    receiver = WebhookReceiver()
    monkeypatch.setenv("DSINFRA_WEBHOOK_URL", receiver.url)
    yield receiver
    receiver.close()
