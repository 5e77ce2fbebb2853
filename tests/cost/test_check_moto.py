"""The cost check against a real moto server: what each budget rule does to a stack."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dsinfra.cloud.actions import resume_stack
from dsinfra.ops.local import audit_log

from .conftest import hours_later, make_stack
from .helpers import REGIONS, billable, check, instance_states



def test_stack_within_budget_is_left_alone(aws, state_dir):
    made = make_stack("cheap", budget_usd=1000, period="total", on_exceed="destroy")
    result = check(hours_later(10), enforce=True)["cheap"]
    assert (result["status"], result["action"], result["action_result"]) == ("ok", "none", "none")
    # g5.2xlarge $1.212/h for ~10 h plus an 8 GiB root volume
    assert 12.0 < result["spend_usd"] < 12.3
    assert set(instance_states(made["instances"]).values()) == {"running"}


def test_over_budget_destroy_stack_is_gone_with_nothing_billable_left(aws, state_dir):
    make_stack("burner", nodes=2, budget_usd=20, period="total", on_exceed="destroy", eip=True,
               extra_volume_gib=500)
    make_stack("bystander", budget_usd=20, period="total", on_exceed="notify")
    result = check(hours_later(10), enforce=True)
    assert result["burner"]["status"] == "exceeded"
    assert result["burner"]["action_result"] == "done"
    assert "nothing billable with dsinfra:stack=burner remains" in result["burner"]["reason"]
    assert billable("burner") == []
    assert billable("bystander") != []  # only the stack that asked for destroy


def test_over_budget_stop_stack_is_stopped_keeps_volumes_and_resumes(aws, state_dir):
    made = make_stack("pausable", budget_usd=5, period="total", on_exceed="stop",
                      extra_volume_gib=100)
    result = check(hours_later(10), enforce=True)["pausable"]
    assert result["action_result"] == "done"
    assert set(instance_states(made["instances"]).values()) == {"stopped"}
    assert ("volume", "available") in billable("pausable")
    assert resume_stack("pausable", REGIONS) == made["instances"]
    assert set(instance_states(made["instances"]).values()) == {"running"}


def test_protected_stack_is_only_notified(aws, state_dir, webhook):
    made = make_stack("precious", budget_usd=5, period="total", on_exceed="destroy",
                      protect=True)
    result = check(hours_later(10), enforce=True)["precious"]
    assert (result["status"], result["action"], result["action_result"]) == \
        ("exceeded", "notify", "done")
    assert set(instance_states(made["instances"]).values()) == {"running"}
    assert len(webhook.messages) == 1 and "precious" in webhook.messages[0]["text"]


def test_expired_ttl_is_exceeded_even_under_budget(aws, state_dir):
    made = make_stack("shortlived", budget_usd=10_000, period="total", on_exceed="destroy",
                      expires_at=hours_later(2))
    early = check(hours_later(1), enforce=True)["shortlived"]
    assert early["status"] == "ok"
    late = check(hours_later(3), enforce=True)["shortlived"]
    assert late["status"] == "exceeded" and "TTL expired" in late["reason"]
    assert set(instance_states(made["instances"]).values()) == {"terminated"}


def test_dry_run_changes_nothing(aws, state_dir, webhook):
    made = make_stack("rehearsal", budget_usd=1, period="total", on_exceed="destroy", eip=True)
    before = sorted(billable("rehearsal"))
    result = check(hours_later(10))["rehearsal"]
    assert (result["action"], result["action_result"]) == ("destroy", "dry-run")
    assert sorted(billable("rehearsal")) == before
    assert set(instance_states(made["instances"]).values()) == {"running"}
    assert webhook.messages == []


def test_warning_is_sent_once_per_threshold_crossing(aws, state_dir, webhook):
    make_stack("watched", budget_usd=100, period="total", on_exceed="stop")
    start = hours_later(0)
    for hours in (70, 71, 72):  # $85-87 of $100: warn, three checks
        result = check(start + timedelta(hours=hours), enforce=True)["watched"]
        assert result["status"] == "warn"
    assert len(webhook.messages) == 1
    check(start + timedelta(hours=90), enforce=True)  # crosses the budget: a new crossing
    assert len(webhook.messages) == 2 and "exceeded" in webhook.messages[1]["text"]


def test_ledger_keeps_spend_across_runs_restarts_and_stop_start(aws, state_dir):
    made = make_stack("cyclic", budget_usd=10_000, period="total", on_exceed="stop")
    start = hours_later(0)
    first = check(start + timedelta(hours=10))["cyclic"]["spend_usd"]
    again = check(start + timedelta(hours=10))["cyclic"]["spend_usd"]  # re-run: same interval
    assert again == pytest.approx(first)
    from dsinfra.cloud.aws import client

    client("ec2", "us-east-1").stop_instances(InstanceIds=made["instances"])
    # A new process (fresh ledger connection) 20 h later: the stopped instance adds nothing,
    # its root volume keeps billing; the 10 metered hours are not forgotten.
    later = check(start + timedelta(hours=30))["cyclic"]
    assert later["hourly_usd"] < 0.01
    assert first <= later["spend_usd"] < first + 0.05


def test_terminated_resources_are_not_forgotten(aws, state_dir):
    made = make_stack("gone", budget_usd=10_000, period="total", on_exceed="notify", nodes=2)
    start = hours_later(0)
    before = check(start + timedelta(hours=10))["gone"]["spend_usd"]
    from dsinfra.cloud.aws import client

    client("ec2", "us-east-1").terminate_instances(InstanceIds=made["instances"][:1])
    after = check(start + timedelta(hours=20))["gone"]
    assert after["spend_usd"] > before * 1.45  # one node's 10 more hours, the other's 10 kept


def test_every_intent_in_the_audit_log_has_one_result(aws, state_dir):
    make_stack("audited", budget_usd=1, period="total", on_exceed="stop")
    check(hours_later(5), enforce=True)
    records, torn = audit_log().records()
    intents = [r for r in records if r["kind"] == "intent"]
    results = [r for r in records if r["kind"] == "result"]
    assert torn == 0 and len(intents) == 1
    assert [r["intent_id"] for r in results] == [intents[0]["intent_id"]]
    assert intents[0]["who"] and intents[0]["budget_usd"] == 1.0


def test_steady_state_checks_list_only_unattached_volumes(aws, state_dir):
    from dsinfra.cloud.aws import _session

    asked = []
    _session().events.register("provide-client-params.ec2.DescribeVolumes",
                               lambda params, **kw: asked.append(params.get("Filters")))
    made = make_stack("steady", budget_usd=10_000, period="total", extra_volume_gib=300)
    start = hours_later(0)
    first = check(start + timedelta(hours=1))["steady"]
    second = check(start + timedelta(hours=2))["steady"]
    filters = [[f["Name"] for f in call] for call in asked]
    # The first lists every volume and matches the tag here; the second only unattached ones.
    assert filters == [[], ["status"]]
    # Same resources and the same burn: the root volume's size came from the ledger.
    assert second["resources"] == first["resources"] == 3
    assert second["hourly_usd"] == pytest.approx(first["hourly_usd"])
    assert made["volume"]


def test_old_volume_facts_are_refreshed_from_modifications_not_a_new_listing(aws, state_dir,
                                                                           monkeypatch):
    from dsinfra.cloud import inventory
    from dsinfra.cloud.aws import _session, client

    asked = []
    for action in ("DescribeVolumes", "DescribeVolumesModifications"):
        _session().events.register(f"provide-client-params.ec2.{action}",
                                   lambda params, action=action, **kw: asked.append(action))
    made = make_stack("resized", budget_usd=10_000, period="total")
    start = hours_later(0)
    before = check(start + timedelta(hours=1))["resized"]
    root = client("ec2", "us-east-1").describe_instances(InstanceIds=made["instances"])[
        "Reservations"][0]["Instances"][0]["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    client("ec2", "us-east-1").modify_volume(VolumeId=root, Size=2000, VolumeType="io2")
    monkeypatch.setattr(inventory, "VOLUME_FACTS_MAX_AGE_S", 0)  # every fact is old now
    after = check(start + timedelta(hours=2))["resized"]
    # First check: the full listing. Then one modifications call and only unattached volumes.
    assert asked == ["DescribeVolumes", "DescribeVolumesModifications", "DescribeVolumes"]
    volumes = [r for r in inventory.fetch_inventory(
        ["us-east-1"], ["resized"], known_volumes=_ledger_volumes()).resources
        if r.kind == "volume"]
    assert [(v.attrs["size_gib"], v.attrs["volume_type"]) for v in volumes] == [(2000, "io2")]
    assert after["hourly_usd"] > before["hourly_usd"] + 0.1  # 2,000 GiB now bill (as gp3)


def _ledger_volumes():
    from dsinfra.ops.local import local_context

    ctx = local_context(("us-east-1",), enforce=False, now=hours_later(0), use_pulumi=False)
    try:
        return ctx.ledger.known_volumes()
    finally:
        ctx.ledger.close()


def _asked_instance_filters() -> list[list[str]]:
    from dsinfra.cloud.aws import _session

    asked: list[list[str]] = []
    _session().events.register(
        "provide-client-params.ec2.DescribeInstances",
        lambda params, **kw: asked.append([f["Name"] for f in params.get("Filters", [])]))
    return asked


def _launch_foreign(count: int) -> list[str]:
    """Instances in the same account that are not dsinfra's (no dsinfra:stack tag), one
    launch each (moto pages DescribeInstances by reservation)."""
    from dsinfra.cloud.aws import client

    ec2 = client("ec2", "us-east-1")
    return [ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "web"}]}]
    )["Instances"][0]["InstanceId"] for _ in range(count)]


def test_instances_are_matched_to_the_tag_client_side_across_pages(aws, state_dir,
                                                                   monkeypatch):
    from dsinfra.cloud import inventory

    monkeypatch.setitem(inventory.PAGE_SIZE, "describe_instances", 5)
    ours = [make_stack("paged", budget_usd=10_000, period="total")["instances"][0]
            for _ in range(7)]
    foreign = _launch_foreign(1)
    asked = _asked_instance_filters()
    found = inventory.fetch_inventory(["us-east-1"], kinds=["instance"]).resources
    assert sorted(r.id for r in found) == sorted(ours)
    assert not set(foreign) & {r.id for r in found}
    # Two pages of 5, both mostly ours: the tag is never sent as a filter.
    assert asked == [["instance-state-name"], ["instance-state-name"]]


def test_a_region_full_of_other_instances_is_filtered_by_tag_server_side(aws, state_dir,
                                                                        monkeypatch):
    from dsinfra.cloud import inventory

    monkeypatch.setitem(inventory.PAGE_SIZE, "describe_instances", 5)
    _launch_foreign(12)
    made = make_stack("needle", nodes=2, budget_usd=10_000, period="total")
    asked = _asked_instance_filters()
    found = inventory.fetch_inventory(["us-east-1"], kinds=["instance"]).resources
    assert sorted(r.id for r in found) == sorted(made["instances"])
    # The first page came back all foreign with more to come: start again with EC2's filter
    # (one call), instead of paging through the other 12.
    assert asked == [["instance-state-name"], ["instance-state-name", "tag-key"]]


def test_spot_instances_are_metered_at_the_spot_price_history(aws, state_dir):
    from dsinfra.cloud.aws import client

    from .conftest import _spec, stack_tags

    ec2 = client("ec2", "us-east-1")
    launched = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="g5.2xlarge",
                      InstanceMarketOptions={"MarketType": "spot"},
                      TagSpecifications=[_spec("instance", stack_tags("bargain"))])
    history = ec2.describe_spot_price_history(InstanceTypes=["g5.2xlarge"],
                                              ProductDescriptions=["Linux/UNIX"])
    highest = max(float(p["SpotPrice"]) for p in history["SpotPriceHistory"])
    ipv4 = 0.005 if launched["Instances"][0].get("PublicIpAddress") else 0.0
    result = check(hours_later(1))["bargain"]
    assert result["hourly_usd"] == pytest.approx(highest + ipv4, abs=1e-4)  # shown to 4 places
    assert highest < 1.212  # below on-demand: the spot price was used, not the upper bound


def test_a_baked_images_snapshots_are_metered_and_a_stale_one_fails_the_stack(aws, state_dir):
    """The snapshots of an image `dsinfra image bake` made bill GB-months (they outlive the
    instances): the meter prices them at the source volume's size, the one pricer's snapshot
    rate; one whose rule tags disagree with the record is a `failed` stack, never ok."""
    from dsinfra.catalog import HOURS_PER_MONTH, other_price
    from dsinfra.cloud.aws import client

    from .conftest import stack_tags
    from .test_teardown import _bake

    made = make_stack("baker", budget_usd=1000, period="total")
    before = check(hours_later(1))["baker"]
    _, snaps = _bake("baker", made["instances"][0], "baker-replica-1", budget_usd=1000,
                     period="total")
    ec2 = client("ec2", "us-east-1")
    size = ec2.describe_snapshots(SnapshotIds=snaps)["Snapshots"][0]["VolumeSize"]
    rate = other_price("us-east-1", "ebs_snapshot_gb_month")
    assert rate.assumed  # no source bundled for it: said wherever it is shown
    after = check(hours_later(1))["baker"]
    assert after["status"] == "ok", after["reason"]
    assert after["hourly_usd"] == pytest.approx(
        before["hourly_usd"] + size * rate.usd / HOURS_PER_MONTH, abs=1e-4)
    # A snapshot still carrying an older rule (re-tagging is `up`'s job) fails the stack.
    old = stack_tags("baker", budget_usd=500, period="total")
    ec2.create_tags(Resources=snaps, Tags=[{"Key": k, "Value": v} for k, v in old.items()])
    stale = check(hours_later(1))["baker"]
    assert stale["status"] == "failed" and f"snapshot {snaps[0]}" in stale["reason"]
